"""A finished run's record, ``run.json``: what the summary needs from it, written and read back."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

from lrpt.app.bench.machine import machine
from lrpt.app.bench.suite.schema import SuiteRun
from lrpt.artifact.schema import TENSORS_NAME

RUN_RECORD = "run.json"


def finished_record(run: SuiteRun, out: Path) -> dict[str, Any] | None:
    """The run's ``run.json`` if it finished, else None.

    Raises:
        ValueError: it finished with settings the suite no longer gives that run.
    """
    path = out / RUN_RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    saved, current = record.get("settings", {}), run.settings()
    if saved != current:
        differ = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
        raise ValueError(
            f"run {run.id} finished in {out} with other {', '.join(differ)} than the suite now "
            f"gives it: delete that directory to rerun it, or rename the suite's entry"
        )
    return record


def run_record(
    suite: str,
    run: SuiteRun,
    results: dict[str, Any],
    artifact_bytes: int,
    peak_rss_mb: float | None,
) -> dict[str, Any]:
    """What the summary needs from one finished run (plus its settings, to detect changes)."""
    metric = results["task"]["metric"]
    best = results.get("best_validation")
    return {
        "suite": suite,
        "id": run.id,
        "task": run.task_name,
        "config": run.config,
        "method": run.method,
        "seed": run.seed,
        "model": results["model"]["name"],
        "options": run.options,
        "metric": metric,
        "test": (results.get("test") or {}).get(metric),
        "zero_shot": (results.get("zero_shot_test") or {}).get(metric),
        "best_validation": best["value"] if best else None,
        "trainable_params": results["trainable_params"]["total"],
        "artifact_bytes": artifact_bytes,
        "steps": results["steps"],
        "train_seconds": results["train_seconds"],
        "sec_per_step": results["seconds_per_step"],
        "peak_rss_mb": peak_rss_mb,
        "finished": now(),
        "machine": machine(),
        "settings": run.settings(),
    } | ({"grid_point": run.grid.label(run.point)} if run.grid and run.point is not None else {})


def prompt_bytes(prompt_dir: Path) -> int:
    """Bytes on disk of a saved prompt artifact (all its files)."""
    return sum(p.stat().st_size for p in prompt_dir.iterdir() if p.is_file())


def prompt_sha256(prompt_dir: Path) -> str | None:
    """SHA-256 of the artifact's tensor file (``prompt.safetensors``, no metadata: its bytes are
    the tensors'), so that a rerun can be checked bit for bit against a record whose tensors
    are not committed; None when there is no such file."""
    path = prompt_dir / TENSORS_NAME
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
