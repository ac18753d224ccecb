"""A run's output directory (``--out``): the names of what it holds, and whether it may be used.

``OUT/checkpoint.pt`` (:mod:`~lrpt.app.training.checkpoint`), ``OUT/results.json`` and
``OUT/prompt/`` (:mod:`~lrpt.app.training.results`): the names are written here once, for the
loop and for the tools that read a run (the benchmark suites).
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"
PROMPT_DIR = "prompt"


def check_out(out: Path, resume: bool) -> None:
    """Raise ``FileExistsError`` if ``out`` exists, is not empty and ``resume`` is False."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {str(out)!r} exists and is not a directory")
    if not resume and out.exists() and any(out.iterdir()):
        raise FileExistsError(
            f"output directory {str(out)!r} already exists: pass --resume to continue its run, "
            "or choose a new --out"
        )


def prepare_out(out: Path, resume: bool) -> bool:
    """Create ``out`` (see :func:`check_out`); → whether a checkpoint to resume from exists."""
    check_out(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    return resume and (out / CHECKPOINT).is_file()
