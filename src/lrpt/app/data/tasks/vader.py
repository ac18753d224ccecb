"""The vaderSentiment 3.3.2 sdist, source of the ``mr`` and ``tweets`` tasks.

The sdist is not importable: it is read from :func:`~lrpt.app.data.tasks.base.data_dir`
(``scripts/setup_real.sh`` puts ``vaderSentiment-3.3.2.tar.gz`` there), and the two
ground-truth files the tasks need are extracted once next to it (``hutto_ICWSM_2014/``). Each
file's rows are ``id<TAB>mean rating<TAB>text``, read as UTF-8 (they are valid UTF-8), falling
back to latin-1.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from lrpt.app.data.tasks.base import data_dir, decode

log = logging.getLogger(__name__)

VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_PIP = "pip download --no-deps --no-binary :all: vadersentiment==3.3.2 -d {dir}"
MOVIE_REVIEWS = "movieReviewSnippets_GroundTruth.txt"
TWEETS = "tweets_GroundTruth.txt"
_INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"
_DIR = "hutto_ICWSM_2014"
_FILES = (MOVIE_REVIEWS, TWEETS)


def _sdist(directory: Path) -> Path | None:
    found = [p for p in directory.glob("*.tar.gz") if p.name.lower() == VADER_SDIST.lower()]
    return found[0] if found else None


def available(name: str) -> bool:
    """Whether ground-truth file ``name`` is extracted, or the sdist is there to extract it."""
    directory = data_dir()
    return (directory / _DIR / name).is_file() or (
        directory.is_dir() and _sdist(directory) is not None
    )


def vader_file(name: str) -> Path:
    """Path to ``name`` from the sdist's ``hutto_ICWSM_2014`` archive, extracting it once."""
    directory = data_dir()
    target = directory / _DIR
    if (target / name).is_file():
        return target / name
    sdist = _sdist(directory) if directory.is_dir() else None
    if sdist is None:
        raise ValueError(
            f"the mr and tweets tasks need {VADER_SDIST} in {directory} (set LRPT_DATA_DIR to "
            f"change it); get it with: {VADER_PIP.format(dir=directory)} "
            f"(or run scripts/setup_real.sh)"
        )
    _extract(sdist, target)
    return target / name


def _extract(sdist: Path, target: Path) -> None:
    """Extract the needed ground-truth files into ``target`` atomically (temp dir + rename)."""
    log.info("extracting %s from %s", ", ".join(_FILES), sdist)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_DIR}.", dir=target.parent))
    try:
        with tarfile.open(sdist, "r:gz") as outer:
            inner_name = next(n for n in outer.getnames() if n.endswith(_INNER))
            inner_file = _member(outer, inner_name)
            with tarfile.open(fileobj=inner_file, mode="r:gz") as inner:
                for name in _FILES:
                    member = _member(inner, f"{_DIR}/{name}")
                    (tmp / name).write_bytes(member.read())
        if target.exists():  # a concurrent extraction won
            return
        os.replace(tmp, target)
    except (tarfile.TarError, KeyError, StopIteration, AttributeError) as err:
        raise ValueError(f"{sdist} is not the vaderSentiment 3.3.2 sdist ({err!r})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    """A regular file inside ``archive``; ValueError if it is not one."""
    handle = archive.extractfile(name)
    if handle is None:
        raise ValueError(f"{archive.name!r}: {name} is not a regular file")
    return handle


def vader_rows(name: str) -> list[tuple[int, float, str]]:
    """(id, mean rating, text) rows of ground-truth file ``name``, sorted by id."""
    path = vader_file(name)
    rows = []
    for n, line in enumerate(decode(path.read_bytes()).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise ValueError(f"{path}, line {n}: expected id, rating and text separated by tabs")
        rows.append((int(parts[0]), float(parts[1]), parts[2].strip()))
    return sorted(rows)
