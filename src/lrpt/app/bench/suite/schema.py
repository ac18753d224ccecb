"""The suite file: its schema, its checks, and the runs it expands to."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrpt.app.bench.suite import claims as bench_claims
from lrpt.app.method_options import check_method_options, option_types
from lrpt.app.spec import RunSpec, sections_from_settings

SUITES_DIR = Path("bench/suites")
GRID_DIR = "grid"

_SUITE_KEYS = {"description", "defaults", "run", "claim", "compare"}
_ENTRY_KEYS = {"name", "method", "options", "grid", "grid_group", "grid_from"}
# lrpt train flags the runner sets itself
_RUNNER_FLAGS = {"out", "resume", "quiet", "seed", "task", "data", "method"}
# what a run is and when it runs, not how it trains
_ORDER_KEYS = {"tasks", "seeds", "stage"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_FLAG_VALUE = (str, int, float, bool)
_POINT_LABEL = re.compile(r"[A-Za-z0-9._=,+-]+")


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
