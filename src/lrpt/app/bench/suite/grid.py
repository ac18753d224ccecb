"""Learning-rate grids: the point each grid group chooses from its grid runs' validation scores,
and the settings a run then trains with."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from lrpt.app.bench.suite.records import finished_record
from lrpt.app.bench.suite.schema import Suite, SuiteRun
from lrpt.app.training.outdir import CHECKPOINT


def resolve(suite: Suite, run: SuiteRun, root: Path) -> SuiteRun | None:
    """The run with the settings it trains with: a run of an entry with a grid takes the chosen
    point (None while the grid is not finished); any other run is returned as it is."""
    if not run.waits_for_grid:
        return run
    choice = grid_choice(suite, run, root)
    if choice is None or choice["chosen"] is None:
        return None
    assert run.grid is not None
    return run.with_point(run.grid.points[choice["chosen"]])


def grid_choice(suite: Suite, run: SuiteRun, root: Path) -> dict[str, Any] | None:
    """The selection for ``run``'s grid group on ``run``'s task, from the grid runs' validation
    scores alone (their ``best_validation``); None if ``run`` has no grid.

    → ``{"group", "seed", "points": [{"label", "settings", "validation": {config: value or
    None}, "mean"}], "chosen"}``: ``mean`` is over the group's entries (None until all of
    them finished that point); ``chosen`` is the index of the best mean (the first on a tie),
    None until every point has finished.
    """
    if run.grid is None:
        return None
    grid = run.grid
    members = [
        r
        for r in suite.runs
        if r.selects and r.grid is not None and r.grid.group == grid.group and r.task == run.task
    ]
    points: list[dict[str, Any]] = [
        {"label": grid.label(i), "settings": p, "validation": {}, "mean": None}
        for i, p in enumerate(grid.points)
    ]
    for member in members:
        assert member.point is not None
        record = finished_record(member, root / member.id)
        value = None if record is None else record["best_validation"]
        if record is not None and value is None:
            raise ValueError(f"grid run {member.id} has no validation score: a grid needs one")
        points[member.point]["validation"][member.config] = value
    for point in points:
        values = list(point["validation"].values())
        if values and all(v is not None for v in values):
            point["mean"] = statistics.fmean(values)
    chosen = None
    if all(point["mean"] is not None for point in points):
        chosen = max(range(len(points)), key=lambda i: points[i]["mean"])
    seed = members[0].seed if members else run.seed
    return {"group": grid.group, "seed": seed, "points": points, "chosen": chosen}


def grid_selections(suite: Suite, root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(task name, config) → :func:`grid_choice` for every entry with a grid, on each task."""
    selections: dict[tuple[str, str], dict[str, Any]] = {}
    for run in suite.runs:
        key = (run.task_name, run.config)
        if run.waits_for_grid and key not in selections:
            choice = grid_choice(suite, run, root)
            assert choice is not None
            selections[key] = choice
    return selections


def finished_points(choice: dict[str, Any], config: str) -> int:
    """``config``'s finished grid runs in ``choice`` (a group's choice lists every member's
    score at each point: counting only its own counts each run once over the group)."""
    return sum(p["validation"].get(config) is not None for p in choice["points"])


def trained_as(suite: Suite, run: SuiteRun, root: Path) -> Path | None:
    """The directory of the finished grid run that trained exactly ``run`` (settled: at its
    chosen point; the same settings but ``evaluate_test``), if its checkpoint is on disk."""
    if run.selects or run.grid is None or not run.grid.own:
        return None

    def trains(r: SuiteRun) -> dict[str, Any]:
        settings = r.settings()
        settings["training"] = {k: v for k, v in r.training.items() if k != "evaluate_test"}
        return settings

    for member in suite.runs:
        if member.selects and member.config == run.config and trains(member) == trains(run):
            done = finished_record(member, root / member.id) is not None
            if done and (root / member.id / CHECKPOINT).is_file():
                return root / member.id
    return None
