"""``lrpt bench --suite NAME``: run a benchmark suite, resumably, and aggregate its results.

A suite is a TOML file (``bench/suites/NAME.toml``)::

    description = "what the suite compares"

    [defaults]                 # any ``lrpt train`` flag (snake_case), plus tasks and seeds
    model = "smollm2-135m"
    tasks = ["mr"]
    seeds = [0]
    steps = 100

    [[run]]                    # one configuration
    name = "ulpt-n100-r2"      # unique; a directory name
    method = "ulpt"
    options = { num_tokens = 100, rank = 2 }   # the method's options
    # any key of [defaults] here overrides it for this configuration

Each configuration runs on each of its tasks with each of its seeds. The runs are ordered seed by
seed (every configuration and task with the first seed, then the second seed, ...), so that a
suite stopped half-way already has a complete single-seed table. An entry's ``stage = K``
(default 0) puts it after every entry of a lower stage, all seeds included: the core comparison
completes before the extra configurations start. Run ``TASK/NAME/seedK`` trains in
``RESULTS/SUITE/TASK/NAME/seedK/``, the ``lrpt train --out`` layout (``prompt/``,
``results.json``, ``checkpoint.pt``), through a child process ``python -m lrpt train --config
spec.json --resume``, where ``spec.json`` is the run's spec (:mod:`lrpt.app.spec`): the same
construction path as the command line, an interrupted run continues
from its checkpoint, and the child's own peak resident memory is measurable. When the child
succeeds, ``run.json`` (:func:`run_record`) is written beside its results; a run with a
``run.json`` is finished and a rerun skips it (it is an error if the suite changed that run's
settings since). After every finished run the suite's ``summary.json`` (:func:`summarize`),
``summary.md`` and ``summary.png`` are rewritten from all finished runs.

Learning-rate grids: an entry's ``grid`` (a table of lists, their product; or an array of
tables, one point each) lists settings to choose from, e.g. ``grid = { lr = [0.1, 0.03, 0.01]
}`` or, for a method with two rates, ``grid = [{ lr = 0.3, lowrank_lr = 5e-4 }, ...]`` (a key
is any ``lrpt train`` setting or method option). Each point trains on the entry's first seed
only, on each task, with ``evaluate_test = false`` (``TASK/NAME/grid/POINT/seedK``): the test
split is never read during selection. The point with the best validation metric (the run's
``best_validation``; the first point on a tie) is chosen per task, and the entry's seeds then
train at it and are tested as any other run. Entries with the same ``grid_group`` (the same
points) choose one point together: the one with the best mean validation over the group's
entries on that task. ``grid_from = "NAME"`` trains at the point entry ``NAME``'s grid chose on
the same task, with no grid runs of its own (e.g. a longer budget at the tuned rate). Grid runs
come before every other run of their stage; a run whose grid
is not complete waits (it is reported as waiting and retried on the next invocation). The
summaries list every point's validation score and the choice. The tested run on the grid's seed
at the chosen point trains exactly what that grid run trained (same settings but for the test
evaluation, bit for bit): when the grid run's ``checkpoint.pt`` is on disk, it is copied to the
tested run, which resumes at its last step and only evaluates (its ``run.json`` names the grid
run in ``trained_as``); without it (e.g. a fresh clone: checkpoints are not committed) the run
trains from the start and ends with the same prompt.

Per-run measurements: ``sec_per_step`` is the trainer's ``train_seconds / steps`` (optimizer
steps only, summed over resumed attempts); ``peak_rss_mb`` is the peak resident set size of the
training process (Python, torch, the frozen model, the data, the run) from ``os.wait4``'s
resource usage of that child, for the attempt that finished the run; ``artifact_bytes`` is the
size of the saved ``prompt/`` directory.
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import hashlib
import io
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrpt.app.bench import claims as bench_claims
from lrpt.app.cli.flags import check_method_options, option_types
from lrpt.app.spec import RunSpec, sections_from_settings
from lrpt.app.training.outdir import CHECKPOINT, RESULTS
from lrpt.artifact.schema import TENSORS_NAME
from lrpt.fileio import atomic_write, atomic_write_bytes, atomic_write_text

SUITES_DIR = Path("bench/suites")
RESULTS_DIR = Path("bench/results")
RUN_RECORD = "run.json"
RUN_SPEC = "spec.json"  # the run spec the child trains (lrpt train --config)
TRAIN_LOG = "train.log"
SUMMARY_FILES = ("summary.json", "summary.md", "summary.png")

_SUITE_KEYS = {"description", "defaults", "run", "claim", "compare"}
_ENTRY_KEYS = {"name", "method", "options", "grid", "grid_group", "grid_from"}
# lrpt train flags the runner sets itself
_RUNNER_FLAGS = {"out", "resume", "quiet", "seed", "task", "data", "method"}
# what a run is and when it runs, not how it trains
_ORDER_KEYS = {"tasks", "seeds", "stage"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_FLAG_VALUE = (str, int, float, bool)
_POINT_LABEL = re.compile(r"[A-Za-z0-9._=,+-]+")
GRID_DIR = "grid"

Log = Callable[[str], None]


# --- the suite file ------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """An entry's learning-rate grid: the settings of each point, and the group that chooses
    one point together (the entry's own name unless it gives ``grid_group``)."""

    points: tuple[dict[str, Any], ...]
    group: str
    own: bool = True  # False: the entry takes another entry's choice (grid_from), no grid runs

    def label(self, index: int) -> str:
        """Point ``index`` as a directory name: ``lr=0.01`` or ``lr=0.3,lowrank_lr=0.0005``."""
        return ",".join(
            f"{key}={value!r}".replace("'", "") for key, value in self.points[index].items()
        )


@dataclass(frozen=True)
class SuiteRun:
    """One training run of a suite: configuration ``config`` on ``task`` with ``seed``.

    ``grid``: the entry's grid, if it has one. ``point``: set for a grid run (the index of the
    point it trains, already merged into its settings); None for a run of the entry's seeds,
    whose settings take the chosen point (:meth:`with_point`) once its grid has finished.
    """

    config: str
    method: str
    task: str
    seed: int
    options: dict[str, Any] = field(default_factory=dict)  # method options
    training: dict[str, Any] = field(default_factory=dict)  # other lrpt train flags, model too
    grid: Grid | None = None
    point: int | None = None

    @property
    def task_name(self) -> str:
        """The built-in task's name, or the data file's name without its suffix."""
        return self.task if is_builtin(self.task) else Path(self.task).stem

    @property
    def id(self) -> str:
        if self.grid is not None and self.point is not None:
            label = self.grid.label(self.point)
            return f"{self.task_name}/{self.config}/{GRID_DIR}/{label}/seed{self.seed}"
        return f"{self.task_name}/{self.config}/seed{self.seed}"

    @property
    def selects(self) -> bool:
        """Whether this is a grid run (selection only: trained, validated, never tested)."""
        return self.point is not None

    @property
    def waits_for_grid(self) -> bool:
        """Whether this run's settings depend on its grid's choice."""
        return self.grid is not None and self.point is None

    def with_point(self, point: dict[str, Any]) -> SuiteRun:
        """This run with ``point``'s settings: method options to ``options``, the rest to
        ``training``."""
        names = option_types()
        return dataclasses.replace(
            self,
            options=self.options | {k: v for k, v in point.items() if k in names},
            training=self.training | {k: v for k, v in point.items() if k not in names},
        )

    def settings(self) -> dict[str, Any]:
        """What the run trains with (JSON-able); a finished run must still match it."""
        return {
            "method": self.method,
            "task": self.task,
            "seed": self.seed,
            "training": self.training,
            "options": self.options,
        }

    def spec(self, out: Path) -> RunSpec:
        """The run spec of this run, writing to ``out`` (validated: raises ValueError)."""
        source = "task" if is_builtin(self.task) else "data"
        settings = self.training | {"method": self.method, source: self.task, "seed": self.seed}
        sections = sections_from_settings(settings)
        check_method_options(self.method, self.options)
        sections["method"] |= self.options
        return RunSpec.from_dict(sections | {"out": str(out)}, f"run {self.id}")


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    runs: list[SuiteRun]
    claims: list[bench_claims.Claim] = field(default_factory=list)
    compare: str | None = None  # another suite's file, whose results the summary sets beside
    sources: dict[str, str] = field(default_factory=dict)  # config → its grid_from entry

    def planned_seeds(self) -> dict[str, int]:
        """Configuration → the number of seeds it runs with (on each of its tasks)."""
        seeds: dict[str, set[int]] = {}
        for run in self.runs:
            if not run.selects:
                seeds.setdefault(run.config, set()).add(run.seed)
        return {config: len(s) for config, s in seeds.items()}


def is_builtin(task: str) -> bool:
    """Whether ``task`` names a built-in task (else it is a data file, as ``lrpt train --data``)."""
    from lrpt.app.data.tasks import TASKS

    return task in TASKS


def suite_path(name: str) -> Path:
    """``NAME`` → ``bench/suites/NAME.toml``; a path ending in ``.toml`` is used as given."""
    path = Path(name) if name.endswith(".toml") else SUITES_DIR / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
        where = f"suites in {SUITES_DIR}: {', '.join(known)}"
        if not known:
            where = f"no {SUITES_DIR} here: run from the repository root or give the .toml path"
        raise FileNotFoundError(f"--suite {name!r}: {path} does not exist ({where})")
    return path


def load_suite(path: str | os.PathLike) -> Suite:
    """Read and check a suite file; every run's ``lrpt train`` arguments are validated.

    Raises:
        ValueError: an unknown key, a duplicate or unsafe name, a bad flag or option value.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"suite {str(path)!r}: {err}") from None
    where = f"suite {str(path)!r}"
    _check_keys(where, data, _SUITE_KEYS)
    defaults = data.get("defaults", {})
    if set(defaults) & _ENTRY_KEYS:
        raise ValueError(f"{where} [defaults]: name, method and options go in each [[run]]")
    _check_settings(f"{where} [defaults]", defaults)
    entries = data.get("run", [])
    if not entries:
        raise ValueError(f"{where} has no [[run]] entries")
    configs: list[tuple[str, dict[str, Any]]] = []
    for i, entry in enumerate(entries):
        name = _check_entry(f"{where} [[run]] #{i + 1}", entry, {c[0] for c in configs})
        configs.append((name, defaults | entry))
    grids = _check_grids(where, configs)
    runs = _expand(where, configs, grids)
    _validate(where, runs)
    claims = bench_claims.parse_claims(where, data.get("claim", []), {c[0] for c in configs})
    compare = data.get("compare")
    if compare is not None and (not isinstance(compare, str) or not _NAME.fullmatch(compare)):
        raise ValueError(f"{where}: compare must be the name of another suite, got {compare!r}")
    if compare == path.stem:
        raise ValueError(f"{where}: compare names the suite itself")
    if compare is not None and not (path.parent / f"{compare}.toml").is_file():
        raise ValueError(
            f"{where}: compare {compare!r}: no suite file {path.parent / compare}.toml"
        )
    compare = None if compare is None else str(path.parent / f"{compare}.toml")
    sources = {name: merged["grid_from"] for name, merged in configs if "grid_from" in merged}
    return Suite(path.stem, str(data.get("description", "")), runs, claims, compare, sources)


def _check_keys(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _check_settings(where: str, table: dict[str, Any]) -> None:
    """Defaults or an entry's overrides: tasks, seeds and single-valued lrpt train flags."""
    for key, value in table.items():
        if key in _RUNNER_FLAGS:
            raise ValueError(f"{where}: {key!r} is set by the suite runner, not in a suite")
        if key == "tasks":
            ok = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        elif key == "seeds":
            ok = isinstance(value, list) and value and all(type(v) is int and v >= 0 for v in value)
        elif key == "stage":
            ok = type(value) is int and value >= 0
        else:
            ok = isinstance(value, _FLAG_VALUE)
        if not ok:
            kind = {
                "tasks": "a list of task names",
                "seeds": "a list of integers ≥ 0",
                "stage": "an integer ≥ 0",
            }
            raise ValueError(f"{where}: {key} must be {kind.get(key, 'a single value')}")


def _check_entry(where: str, entry: dict[str, Any], taken: set[str]) -> str:
    name, method = entry.get("name"), entry.get("method")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{where}: name must be letters, digits, '.', '_', '-', got {name!r}")
    if name in taken:
        raise ValueError(f"{where}: name {name!r} is used twice")
    if not isinstance(method, str):
        raise ValueError(f"{where} ({name}): method must be a method key, got {method!r}")
    options = entry.get("options", {})
    if not isinstance(options, dict) or not all(
        isinstance(v, _FLAG_VALUE) for v in options.values()
    ):
        raise ValueError(f"{where} ({name}): options must be a table of single values")
    _check_settings(f"{where} ({name})", {k: v for k, v in entry.items() if k not in _ENTRY_KEYS})
    return name


def _expand(
    where: str, configs: list[tuple[str, dict[str, Any]]], grids: dict[str, Grid]
) -> list[SuiteRun]:
    """Configurations × their tasks × their seeds: by stage, seed, task, then suite order; the
    grid runs of a stage (first seed only) before its other runs."""
    runs: list[tuple[tuple[int, ...], SuiteRun]] = []
    tasks: list[str] = []
    for index, (name, merged) in enumerate(configs):
        training = {k: v for k, v in merged.items() if k not in _ENTRY_KEYS | _ORDER_KEYS}
        if "tasks" not in merged:
            raise ValueError(f"{where}, {name}: no tasks (set them in [defaults] or the entry)")
        grid, stage, seeds = grids.get(name), merged.get("stage", 0), merged.get("seeds", [0])
        for task, seed in itertools.product(merged["tasks"], seeds):
            if task not in tasks:
                tasks.append(task)
            options = dict(merged.get("options", {}))
            run = SuiteRun(name, merged["method"], task, seed, options, training, grid)
            runs.append(((stage, seed, tasks.index(task), index, 0), run))
            if grid is None or not grid.own or seed != seeds[0]:
                continue
            for i, point in enumerate(grid.points):
                selection = run.with_point(point)
                selection = dataclasses.replace(
                    selection, point=i, training=selection.training | {"evaluate_test": False}
                )
                runs.append(((stage, -1, tasks.index(task), index, i), selection))
    return [run for _, run in sorted(runs, key=lambda item: item[0])]


def _check_grids(where: str, configs: list[tuple[str, dict[str, Any]]]) -> dict[str, Grid]:
    """Each entry's ``grid`` (a table of lists: their product; or an array of tables) and
    ``grid_group``; the entries of a group must have the same points."""
    grids: dict[str, Grid] = {}
    for name, merged in configs:
        value, group = merged.get("grid"), merged.get("grid_group", name)
        here = f"{where}, {name}"
        if "grid_from" in merged and ("grid" in merged or "grid_group" in merged):
            raise ValueError(f"{here}: grid_from takes another entry's grid: no grid here")
        if value is None:
            if "grid_group" in merged:
                raise ValueError(f"{here}: grid_group {group!r} without a grid")
            continue
        if not isinstance(group, str) or not _NAME.fullmatch(group):
            raise ValueError(f"{here}: grid_group must be a name, got {group!r}")
        points = _grid_points(here, value)
        grids[name] = Grid(points, group)
    tasks = {name: merged.get("tasks", []) for name, merged in configs}
    for name, merged in configs:
        source = merged.get("grid_from")
        if source is None:
            continue
        if source not in grids:
            raise ValueError(f"{where}, {name}: grid_from {source!r} is not an entry with a grid")
        missing = [t for t in tasks[name] if t not in tasks[source]]
        if missing:
            raise ValueError(
                f"{where}, {name}: grid_from {source!r} has no grid on {', '.join(missing)}"
            )
        grids[name] = dataclasses.replace(grids[source], own=False)
    by_group: dict[str, tuple[str, Grid]] = {}
    for name, grid in grids.items():
        first = by_group.setdefault(grid.group, (name, grid))
        if first[1].points != grid.points:
            raise ValueError(
                f"{where}: grid_group {grid.group!r} has other points in {name} than in "
                f"{first[0]}: the entries of a group choose one point together"
            )
    return grids


def _grid_points(where: str, value: Any) -> tuple[dict[str, Any], ...]:
    if isinstance(value, dict):
        ok = value and all(
            isinstance(v, list) and v and all(isinstance(x, _FLAG_VALUE) for x in v)
            for v in value.values()
        )
        if not ok:
            raise ValueError(f"{where}: grid must be a table of non-empty lists of values")
        points = tuple(dict(zip(value, combo, strict=True)) for combo in
                       itertools.product(*value.values()))  # fmt: skip
    elif isinstance(value, list) and value and all(isinstance(p, dict) and p for p in value):
        points = tuple(dict(p) for p in value)
        if any(list(p) != list(points[0]) for p in points):
            raise ValueError(f"{where}: every grid point must set the same keys")
        if not all(isinstance(v, _FLAG_VALUE) for p in points for v in p.values()):
            raise ValueError(f"{where}: grid points must be tables of single values")
    else:
        raise ValueError(
            f"{where}: grid must be a table of lists (their product) or an array of tables"
        )
    if len(points) < 2:
        raise ValueError(f"{where}: a grid needs at least 2 points, got {len(points)}")
    if any(points.count(p) > 1 for p in points):
        raise ValueError(f"{where}: the grid has the same point twice")
    bad = sorted(set(points[0]) & (_RUNNER_FLAGS | _ORDER_KEYS | {"evaluate_test"}))
    if bad:
        raise ValueError(f"{where}: {', '.join(bad)} cannot be in a grid")
    grid = Grid(points, "")
    for i in range(len(points)):
        if not _POINT_LABEL.fullmatch(grid.label(i)):
            raise ValueError(f"{where}: grid point {points[i]} does not make a directory name")
    return points


def _validate(where: str, runs: list[SuiteRun]) -> None:
    """Build each run's spec, which checks every value, loading nothing."""
    options = option_types()
    ids = [run.id for run in runs]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"{where}: two tasks give the same run ids {', '.join(twice)}")
    for run in runs:
        if not is_builtin(run.task) and not Path(run.task).exists():
            raise ValueError(
                f"{where}, {run.config}: task {run.task!r} is neither a built-in task nor a "
                "data file (a path relative to the current directory)"
            )
        misplaced = sorted(set(run.training) & set(options))
        if misplaced:
            raise ValueError(f"{where}, {run.config}: put {', '.join(misplaced)} under options")
        unknown = sorted(set(run.options) - set(options))
        if unknown:
            raise ValueError(
                f"{where}, {run.config}: options {', '.join(unknown)} are not method options "
                f"(expected some of {', '.join(sorted(options))})"
            )
        if "model" not in run.training:
            raise ValueError(f"{where}, {run.config}: no model (set it in [defaults])")
        try:
            run.spec(Path("out"))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{where}, run {run.id}: {err}") from None


# --- running -------------------------------------------------------------------------------


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
            f"{step}: {'validation ' if run.selects else ''}{record['metric']} {_fmt(score)}, "
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


def last_line(path: Path) -> str:
    """The last non-empty line of a text file (a failed child's error message)."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


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


def train_run(
    suite: str, run: SuiteRun, out: Path, source: Path | None = None
) -> dict[str, Any] | None:
    """Train ``run`` in a child process into ``out``; → its record (also ``run.json``) or None.

    ``source``: the directory of a grid run that trained exactly ``run`` (:func:`trained_as`);
    its checkpoint is copied to ``out`` (unless ``out`` has one), so the child resumes at the last
    step and only evaluates. The record's ``peak_rss_mb`` and ``wall_seconds`` then cover both
    processes (the larger peak, the summed time)."""
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
        log.write(f"# {_now()} {' '.join(command)}\n")
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
        "finished": _now(),
        "machine": machine(),
        "settings": run.settings(),
    } | ({"grid_point": run.grid.label(run.point)} if run.grid and run.point is not None else {})


def machine() -> dict[str, Any]:
    """The machine a run trained on: CPU, core count, OS, Python and torch versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = names[0].strip() if names else cpu
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


# --- aggregation ---------------------------------------------------------------------------


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, config, method) over its seeds, in order of first appearance.

    ``mean`` and ``std`` are over the seeds' test metric (``std`` is the sample standard
    deviation, None for one seed); ``sec_per_step`` is the mean over seeds, ``peak_rss_mb`` and
    ``artifact_bytes`` the largest, ``trainable_params`` the configuration's (the same for
    every seed).
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in records:
        key = (record["task"], record["config"], record["method"])
        groups.setdefault(key, []).append(record)
    return [_row(group) for group in groups.values()]


def _row(group: list[dict[str, Any]]) -> dict[str, Any]:
    first = group[0]
    values = [r["test"] for r in group if r["test"] is not None]
    zero_shot = [r["zero_shot"] for r in group if r.get("zero_shot") is not None]
    rss = [r["peak_rss_mb"] for r in group if r.get("peak_rss_mb") is not None]
    return {
        "method": first["method"],
        "task": first["task"],
        "config": first["config"],
        "model": first.get("model"),
        "options": first.get("options", {}),
        "n_seeds": len(group),
        "seeds": [r["seed"] for r in group],
        "metric": first["metric"],
        "values": [r["test"] for r in group],
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "zero_shot": statistics.fmean(zero_shot) if zero_shot else None,
        "trainable_params": first["trainable_params"],
        "artifact_bytes": max(r["artifact_bytes"] for r in group),
        "sec_per_step": statistics.fmean(r["sec_per_step"] for r in group),
        "peak_rss_mb": max(rss) if rss else None,
    }


def write_summary(suite: Suite, root: Path) -> list[dict[str, Any]]:
    """Aggregate the finished runs into ``summary.json``, ``summary.md`` and ``summary.png``.

    Grid runs are not rows (they have no test score); each row of an entry with a grid carries
    its ``grid`` selection (:func:`grid_choice`), and ``summary.md`` lists every grid.
    """
    records = []
    for run in suite.runs:
        settled = None if run.selects else resolve(suite, run, root)
        if settled is not None and (record := finished_record(settled, root / run.id)):
            records.append(record)
    grids = grid_selections(suite, root)
    rows = summarize(records)
    for row in rows:
        if (row["task"], row["config"]) in grids:
            row["grid"] = grids[(row["task"], row["config"])]
    if not rows and not any(_finished_points(g, c) for (_, c), g in grids.items()):
        return rows
    text = markdown(suite, rows, records, grids, comparison(suite, root, rows))
    atomic_write_text(root / "summary.json", json.dumps(rows, indent=2) + "\n")
    atomic_write_text(root / "summary.md", text + "\n")
    if rows:
        plot(rows, root / "summary.png", title=f"suite {suite.name}")
    return rows


def rates(suite: Suite, root: Path) -> dict[tuple[str, str], str]:
    """(task, config) → the learning rates its first finished tested seed trained at, as
    ``lr 0.01, lowrank_lr 0.0005``: the resolved ``lr`` and every method option ending in
    ``_lr``, from that run's ``results.json``."""
    found: dict[tuple[str, str], str] = {}
    for run in suite.runs:
        settled = None if run.selects else resolve(suite, run, root)
        if settled is None or (run.task_name, run.config) in found:
            continue
        record = finished_record(settled, root / run.id)
        results = root / run.id / RESULTS
        if record is None or not results.is_file():
            continue
        saved = json.loads(results.read_text(encoding="utf-8"))
        named = {"lr": saved["training"]["lr"]} | {
            k: v for k, v in saved.get("config", {}).items() if k.endswith("_lr")
        }
        found[(run.task_name, run.config)] = ", ".join(f"{k} {v:g}" for k, v in named.items())
    return found


def comparison(suite: Suite, root: Path, rows: list[dict[str, Any]]) -> list[str]:
    """The summary's tables against the suite ``suite.compare`` names (:mod:`compare`), read
    from that suite's results beside ``root``; its longer budgets against their sources."""
    from lrpt.app.bench import compare as bench_compare

    claims = bench_claims.evaluate(suite.claims, rows, suite.planned_seeds())
    if suite.compare is None:
        return bench_compare.markdown("", rows, [], {}, {}, claims, [], suite.sources)
    other = load_suite(suite.compare)
    other_root = root.parent / other.name
    summary = other_root / "summary.json"
    other_rows = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else []
    other_claims = bench_claims.evaluate(other.claims, other_rows, other.planned_seeds())
    return bench_compare.markdown(
        other.name, rows, other_rows, rates(suite, root), rates(other, other_root),
        claims, other_claims, suite.sources,
    )  # fmt: skip


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


def _finished_points(choice: dict[str, Any], config: str) -> int:
    """``config``'s finished grid runs in ``choice`` (a group's choice lists every member's
    score at each point: counting only its own counts each run once over the group)."""
    return sum(p["validation"].get(config) is not None for p in choice["points"])


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(
    suite: Suite,
    rows: list[dict[str, Any]],
    records: list[dict[str, Any]],
    grids: dict[tuple[str, str], dict[str, Any]] | None = None,
    comparison: list[str] | None = None,
) -> str:
    """A header (suite, runs, machine, dates), one table row per summary row, the claims, the
    ``comparison`` lines (:func:`comparison`), and the learning-rate grids (every point's
    validation score and the choice)."""
    grids = grids or {}
    machines = {json.dumps(r["machine"], sort_keys=True) for r in records}
    dates = sorted(r["finished"][:10] for r in records)
    tested = [run for run in suite.runs if not run.selects]
    span = f" ({dates[0]} to {dates[-1]})" if dates else ""
    lines = [
        f"Suite `{suite.name}`: {suite.description}".rstrip(": "),
        "",
        f"{len(records)} of {len(tested)} runs finished{span}; `lrpt bench --suite {suite.name}`.",
    ]
    own = {r.config for r in suite.runs if r.selects}  # grid_from entries train no grid
    if grids:
        finished = sum(
            _finished_points(g, config) for (_, config), g in grids.items() if config in own
        )
        lines[-1] += f" Grid runs: {finished} of {len(suite.runs) - len(tested)} finished."
    for text in sorted(machines):
        m = json.loads(text)
        lines.append(
            f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['os']}, "
            f"Python {m['python']}, torch {m['torch']}."
        )
    lines += [
        "",
        "| task | config | method | seeds | test (mean ± std) | zero-shot | trainable params "
        "| artifact | s/step | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        score = _fmt(row["mean"]) + ("" if row["std"] is None else f" ± {row['std']:.3f}")
        rss = "—" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:,.0f} MB"
        lines.append(
            f"| {row['task']} | {row['config']} | `{row['method']}` | {row['n_seeds']} "
            f"| {row['metric']} {score} | {_fmt(row['zero_shot'])} "
            f"| {row['trainable_params']:,} | {row['artifact_bytes'] / 1024:,.1f} KiB "
            f"| {row['sec_per_step']:.2f} | {rss} |"
        )
    claims = bench_claims.evaluate(suite.claims, rows, suite.planned_seeds())
    lines += bench_claims.markdown(claims) + (comparison or [])
    return "\n".join(lines + grid_markdown({k: g for k, g in grids.items() if k[1] in own}))


def grid_markdown(grids: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """The learning-rate grids: one line per (task, config, point) with its validation score,
    the group's mean, and the point chosen (marked **chosen**)."""
    if not grids:
        return []
    lines = [
        "",
        "Learning-rate selection: each grid point trained on one seed and scored on validation "
        "only (the test split is not read); the best mean over the grid group is chosen, and "
        "the seeds above train at it.",
        "",
        "| task | config | group | seed | point | validation | group mean | chosen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (task, config), choice in grids.items():
        for i, point in enumerate(choice["points"]):
            mark = "**chosen**" if choice["chosen"] == i else ""
            lines.append(
                f"| {task} | {config} | {choice['group']} | {choice['seed']} | "
                f"`{point['label']}` | {_fmt(point['validation'].get(config))} | "
                f"{_fmt(point['mean'])} | {mark} |"
            )
    return lines


def plot(rows: list[dict[str, Any]], path: Path, *, title: str) -> bool:
    """Test metric against trainable parameters (log x), one point per configuration, error bars
    over seeds, one panel per task; → False (and no file) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        return False
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    methods = list(dict.fromkeys(row["method"] for row in rows))
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        task_rows = [r for r in rows if r["task"] == task]
        for row in (r for r in task_rows if r["mean"] is not None):
            color = colors(methods.index(row["method"]) % 10)
            x, y = row["trainable_params"], row["mean"]
            ax.errorbar(
                x, y, yerr=row["std"] or 0, fmt="o", color=color, capsize=3, label=row["method"]
            )
            ax.annotate(
                row["config"], (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points"
            )
        zero_shot = [r["zero_shot"] for r in task_rows if r["zero_shot"] is not None]
        if zero_shot:
            ax.axhline(
                statistics.fmean(zero_shot),
                color="grey",
                linestyle="--",
                linewidth=1,
                label="zero-shot (no prompt)",
            )
        ax.set(
            xscale="log",
            xlabel="trainable parameters",
            title=task,
            ylabel=f"test {task_rows[0]['metric']} (mean ± std over seeds)",
        )
        ax.xaxis.set_minor_formatter(NullFormatter())  # powers of ten only: no overlapping labels
        ax.margins(x=0.22, y=0.08)
        ax.grid(True, which="both", alpha=0.3)
    handles: dict[str, Any] = {}  # one legend for every panel, outside them (off the points)
    for ax in axes[0]:
        handles |= dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    axes[0][-1].legend(
        handles.values(), handles.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1)
    )
    fig.suptitle(title)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, image.getvalue())
    return True


# --- the command ---------------------------------------------------------------------------


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
            state = f"finished: validation {record['metric']} {_fmt(record['best_validation'])}"
        else:
            state = f"finished: {record['metric']} {_fmt(record['test'])}"
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
