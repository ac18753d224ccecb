"""``lrpt bench --suite NAME``: run a suite, list its runs (``--list``) or rewrite its summary
(``--summarize``), and print what happened."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from lrpt.app.bench.suite.grid import resolve
from lrpt.app.bench.suite.records import finished_record
from lrpt.app.bench.suite.report import SUMMARY_FILES, fmt, write_summary
from lrpt.app.bench.suite.runner import run_suite, select_runs
from lrpt.app.bench.suite.schema import Suite, SuiteRun, load_suite, suite_path

RESULTS_DIR = Path("bench/results")


def status_lines(
    suite: Suite, results_dir: Path, runs: Sequence[SuiteRun] | None = None
) -> list[str]:
    """One line per run (of ``runs``, default all), finished (with its score) or pending, then
    the count."""
    lines = []
    root = results_dir / suite.name
    runs = suite.runs if runs is None else runs
    for run in runs:
        settled = resolve(suite, run, root)
        record = None if settled is None else finished_record(settled, root / run.id)
        if record is None:
            state = "pending" if settled is not None else "pending (waits for its grid)"
        elif run.selects:
            state = f"finished: validation {record['metric']} {fmt(record['best_validation'])}"
        else:
            state = f"finished: {record['metric']} {fmt(record['test'])}"
        lines.append(f"{run.id:<40} {run.method:<9} {state}")
    done = sum("finished:" in line for line in lines)
    return [*lines, f"{done} of {len(runs)} runs finished"]


def run_command(
    name: str,
    results_dir: Path | None,
    *,
    list_only: bool = False,
    summarize_only: bool = False,
    only: Sequence[str] = (),
) -> int:
    """``lrpt bench --suite NAME [--results-dir DIR] [--only PATTERN …] [--list | --summarize]``;
    → the exit code."""
    suite = load_suite(suite_path(name))
    results_dir = RESULTS_DIR if results_dir is None else results_dir
    if list_only:
        print("\n".join(status_lines(suite, results_dir, select_runs(suite, only))))
        return 0
    if summarize_only:
        root = results_dir / suite.name
        rows = write_summary(suite, root)
        where = f"{root}/{{{','.join(SUMMARY_FILES)}}}" if rows else "nothing: no finished run"
        print(f"{len(rows)} summary rows; written: {where}")
        return 0
    outcome = run_suite(
        suite, results_dir, log=lambda line: print(line, file=sys.stderr), only=only
    )
    root = results_dir / suite.name
    selected = len(outcome["done"]) + len(outcome["failed"])  # every selected run is one
    print(
        f"{len(outcome['done'])} of {selected} runs finished; summary in {root}/"
        f"{{{','.join(SUMMARY_FILES)}}}"
    )
    if outcome["failed"]:
        print(f"failed (rerun to retry): {', '.join(outcome['failed'])}")
        return 1
    return 0
