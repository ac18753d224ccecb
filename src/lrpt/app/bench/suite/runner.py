"""Running a suite: each unfinished run trains in a child process ``lrpt train``, resumably, and
the summary is rewritten after each."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lrpt.app.bench.suite.grid import resolve, trained_as
from lrpt.app.bench.suite.records import (
    RUN_RECORD,
    finished_record,
    now,
    prompt_bytes,
    prompt_sha256,
    run_record,
)
from lrpt.app.bench.suite.report import fmt, write_summary
from lrpt.app.bench.suite.schema import Suite, SuiteRun
from lrpt.app.training.outdir import CHECKPOINT, RESULTS
from lrpt.fileio import atomic_write, atomic_write_text

RUN_SPEC = "spec.json"  # the run spec the child trains (lrpt train --config)
TRAIN_LOG = "train.log"

Log = Callable[[str], None]


def select_runs(suite: Suite, only: Sequence[str] = ()) -> list[SuiteRun]:
    """The runs of ``suite`` whose id matches one of the shell patterns ``only`` (all of them
    when it is empty), in the suite's order.

    Raises:
        ValueError: a pattern that matches no run.
    """
    if not only:
        return list(suite.runs)
    for pattern in only:
        if not any(fnmatch.fnmatchcase(run.id, pattern) for run in suite.runs):
            raise ValueError(
                f"--only {pattern!r} matches no run of suite {suite.name!r} (run ids look like "
                f"{suite.runs[0].id!r}; --list shows them all)"
            )
    return [r for r in suite.runs if any(fnmatch.fnmatchcase(r.id, p) for p in only)]


def run_suite(
    suite: Suite, results_dir: Path, *, log: Log = print, only: Sequence[str] = ()
) -> dict[str, Any]:
    """Train every unfinished run of ``suite`` (those matching ``only``, if given: see
    :func:`select_runs`), then aggregate; → ``{"done", "failed", "rows"}``.

    Every finished run is checked against the suite first (a changed one stops everything before
    anything trains). A run that fails is reported and left unfinished (a rerun retries it); the
    others go on. A run waiting for an unfinished grid counts as failed (a rerun retries it).
    """
    root = results_dir / suite.name
    finished = set()
    for run in suite.runs:
        settled = resolve(suite, run, root)
        if settled is not None and finished_record(settled, root / run.id) is not None:
            finished.add(run.id)
    done: list[str] = []
    failed: list[str] = []
    selected = select_runs(suite, only)
    for i, run in enumerate(selected, 1):
        out, step = root / run.id, f"[{i}/{len(selected)}] {run.id}"
        if run.id in finished:
            log(f"{step}: finished before, skipped")
            done.append(run.id)
            continue
        settled = resolve(suite, run, root)
        if settled is None:
            log(f"{step}: WAITING for its grid ({run.grid.group if run.grid else ''})")
            failed.append(run.id)
            continue
        if settled is not run:
            log(f"{step}: the grid chose {_point_text(settled, run)}")
        source = trained_as(suite, settled, root)
        if source is not None:
            log(f"{step}: trained as {source.relative_to(root)}: its checkpoint is tested")
        else:
            log(f"{step}: training ({run.method})")
        record = train_run(suite.name, settled, out, source)
        if record is None:
            log(f"{step}: FAILED ({last_line(out / TRAIN_LOG)}); log: {out / TRAIN_LOG}")
            failed.append(run.id)
            continue
        score = record["best_validation"] if run.selects else record["test"]
        log(
            f"{step}: {'validation ' if run.selects else ''}{record['metric']} {fmt(score)}, "
            f"{record['sec_per_step']:.2f} s/step, {record['wall_seconds'] / 60:.1f} min"
        )
        done.append(run.id)
        write_summary(suite, root)
    rows = write_summary(suite, root)
    return {"done": done, "failed": failed, "rows": rows}


def _point_text(settled: SuiteRun, run: SuiteRun) -> str:
    changed = {k: v for k, v in (settled.options | settled.training).items()
               if (run.options | run.training).get(k) != v}  # fmt: skip
    return ", ".join(f"{k} = {v!r}" for k, v in changed.items()) or "the entry's own settings"


def train_run(
    suite: str, run: SuiteRun, out: Path, source: Path | None = None
) -> dict[str, Any] | None:
    """Train ``run`` in a child process into ``out``; → its record (also ``run.json``) or None.

    ``source``: the directory of a grid run that trained exactly ``run``
    (:func:`~.grid.trained_as`); its checkpoint is copied to ``out`` (unless ``out`` has one), so
    the child resumes at the last step and only evaluates. The record's ``peak_rss_mb`` and
    ``wall_seconds`` then cover both processes (the larger peak, the summed time)."""
    out.mkdir(parents=True, exist_ok=True)
    if source is not None and not (out / CHECKPOINT).is_file():
        atomic_write(out / CHECKPOINT, lambda tmp: shutil.copyfile(source / CHECKPOINT, tmp))
    spec_file = atomic_write_text(out / RUN_SPEC, json.dumps(run.spec(out).to_dict(), indent=2))
    command = [
        sys.executable,
        "-m",
        "lrpt",
        "train",
        f"--config={spec_file}",
        "--resume",
        "--quiet",
    ]
    start = time.perf_counter()
    code, peak_rss_mb = run_child(command, out / TRAIN_LOG)
    if code != 0:
        return None
    results = json.loads((out / RESULTS).read_text(encoding="utf-8"))
    record = run_record(suite, run, results, prompt_bytes(out / "prompt"), peak_rss_mb)
    record["prompt_sha256"] = prompt_sha256(out / "prompt")
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    if source is not None:
        grid = json.loads((source / RUN_RECORD).read_text(encoding="utf-8"))
        record["trained_as"] = grid["id"]
        record["wall_seconds"] = round(record["wall_seconds"] + grid["wall_seconds"], 1)
        peaks = [v for v in (record["peak_rss_mb"], grid.get("peak_rss_mb")) if v is not None]
        record["peak_rss_mb"] = max(peaks, default=None)
    atomic_write_text(out / RUN_RECORD, json.dumps(record, indent=2) + "\n")
    return record


def run_child(command: list[str], log_path: Path) -> tuple[int, float | None]:
    """Run ``command`` with its output appended to ``log_path``; → (exit code, peak RSS in MB)."""
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"# {now()} {' '.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        if not hasattr(os, "wait4"):  # not POSIX: no per-child resource usage
            return proc.wait(), None
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C reaches the child too: let it stop, then stop
            proc.wait()
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    kib = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss  # macOS: bytes
    return proc.returncode, round(kib / 1024, 1)


def last_line(path: Path) -> str:
    """The last non-empty line of a text file (a failed child's error message)."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"
