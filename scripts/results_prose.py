"""Prose whose numbers come from a suite's results: ``{{...}}`` fields filled from its summary.

Dev tooling for ``scripts/readme_tables.py`` (not part of the installed package). A results
discussion written by hand goes stale the moment a run is redone. A prose template
(Markdown, ``bench/prose/SUITE.md``) names results instead of copying them; :func:`render` fills
each field from the suite's committed ``summary.json``, its claims and its runs' rates::

    {{mr/ulpt-n100-r2}}               0.809 ± 0.011   test mean ± std over its seeds
    {{mr/dept-s61-r27}}               0.824 (1 of 3 seeds)   while seeds are missing
    {{mr/ulpt-n100-r2 mean}}          0.809
    {{mr/ulpt-n100-r2 seeds}}         0.798, 0.808 and 0.820 on seeds 0, 1 and 2
    {{mr/ulpt-n100-r2 rates}}         lr 0.01          the rates its tested seeds trained at
    {{mr/pt-n100 grid}}               lr 0.1: 0.870; lr 0.03: 0.860; lr 0.01: 0.885 (chosen)
    {{mr/ulpt-n100-r2 params}}        1,352
    {{mr/ulpt-n100-r2 zero_shot}}     0.732
    {{mr/ept-s61-r27 vs pt-n100}}     ahead on seeds 0 and 2, behind on seed 1
    {{mr/ulpt-n100-r2 ratio pt-n100}} 0.975            mean over the seeds both finished, as a ratio
    {{mr/ulpt-n100-r2 / pt-n100}}     **holds** (0.975, need ≥ 0.97)   the suite's claim
    {{mr/ulpt-n100-r2 / pt-n100 trainable_params}}   the claim on another measure
    {{mr/ulpt-n100-r2 seed0}}         0.798            one seed's test score
    {{mr/ulpt-n100-r2 ratio pt-n100 seed0}}  0.959     one seed's ratio
    {{mr/ulpt-n100-r2 seed0 curve}}   0.850, 0.795 and 0.855 at steps 50, 100 and 150
    {{mr/ulpt-n100-r2 seed0 loss}}    0.61 → 0.38      training loss, mean of the first and
                                                       last 15 steps
    {{paper:mr/ulpt-n100-r2}}         any field, from another suite's committed results

``curve`` is one seed's validation history (the metric at each evaluation), ``loss`` its
training loss at the start and the end of training. ``grid`` lists validation scores of seed 0's
grid runs (the selection's evidence); ``vs`` compares test scores seed by seed (a difference
under half a point is "level"). A claim's verdict is marked with the seeds it rests on while
fewer than planned. A field whose runs have not finished reads ``(pending)``, so a template can
be written before its results; a field that names an unknown configuration, task, field or
claim is an error, with its line.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrpt.app.bench.suite import claims as bench_claims
from lrpt.app.bench.suite.grid import grid_selections
from lrpt.app.bench.suite.report import rates
from lrpt.app.bench.suite.schema import SUITES_DIR, Suite, load_suite, suite_path
from lrpt.app.training.outdir import RESULTS

PENDING = "(pending)"
FIELD = re.compile(r"\{\{(.*?)\}\}", re.S)  # a field may wrap across lines
LEVEL = 0.005  # a per-seed difference below half a point of the metric is "level"
FIELDS = ("mean", "seeds", "rates", "grid", "params", "zero_shot")
SEED_FIELDS = ("score", "curve", "loss")  # the fields a ``seedN`` word may qualify
SEED = re.compile(r"seed(\d+)")
LOSS_WINDOW = 15  # ``loss`` averages this many steps at each end


@dataclass
class Results:
    """What a suite's committed results say: its summary rows, claims, rates and grids."""

    suite: Suite
    root: Path
    rows: dict[tuple[str, str], dict[str, Any]]
    claims: list[dict[str, Any]]
    rates: dict[tuple[str, str], str]
    grids: dict[tuple[str, str], dict[str, Any]]

    @classmethod
    def load(cls, suite: Suite, root: Path) -> Results:
        summary = root / "summary.json"
        rows = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else []
        return cls(
            suite,
            root,
            {(r["task"], r["config"]): r for r in rows},
            bench_claims.evaluate(suite.claims, rows, suite.planned_seeds()),
            rates(suite, root),
            grid_selections(suite, root),
        )


def render(template: str, suite: Suite, root: Path, suites: Path = SUITES_DIR) -> str:
    """``template`` with every ``{{...}}`` field filled from ``suite``'s results in ``root``
    (another suite's, ``{{OTHER:...}}``: ``suites/OTHER.toml`` and ``root``'s sibling
    ``OTHER``).

    Raises:
        ValueError: a malformed field, or one naming an unknown suite, task, configuration,
            field or claim; the message gives the template line.
    """
    loaded: dict[str, Results] = {suite.name: Results.load(suite, root)}

    def results(name: str) -> Results:
        if name not in loaded:
            other = load_suite(suite_path(str(suites / f"{name}.toml")))
            loaded[name] = Results.load(other, root.parent / name)
        return loaded[name]

    def fill(match: re.Match[str]) -> str:
        try:
            return _field(" ".join(match.group(1).split()), suite.name, results)
        except (ValueError, FileNotFoundError) as err:
            line = template.count("\n", 0, match.start()) + 1
            raise ValueError(f"line {line}: {err}") from None

    return FIELD.sub(fill, template)


def _field(text: str, default: str, results: Callable[[str], Results]) -> str:
    words = text.split()
    name = default
    if words and ":" in words[0]:
        name, words[0] = words[0].split(":", 1)
    found = results(name)
    if not words or words[0].count("/") != 1:
        raise ValueError(f"{{{{{text}}}}}: expected TASK/CONFIG first, e.g. mr/pt-n100")
    task, config = words[0].split("/")
    _check_config(found, task, config, text)
    seed = next((m for w in words[1:] if (m := SEED.fullmatch(w))), None)
    if seed is not None:
        rest = words[1:]
        rest.remove(seed.group(0))  # a second seedN stays and is refused below
        return _one_seed(found, task, config, int(seed.group(1)), rest, text)
    if len(words) >= 3 and words[1] in ("/", "vs", "ratio"):
        _check_config(found, task, words[2], text)
        filled = _pair(found, task, config, words[1:], text)
        if filled is not None:
            return filled
    if len(words) > 2 or (len(words) == 2 and words[1] not in FIELDS):
        raise ValueError(
            f"{{{{{text}}}}}: expected TASK/CONFIG [{' | '.join(FIELDS)}], TASK/CONFIG vs "
            "BASELINE, TASK/CONFIG ratio BASELINE or TASK/CONFIG / BASELINE [MEASURE]"
        )
    return _single(found, task, config, words[1] if len(words) == 2 else "score", text)


def _pair(found: Results, task: str, config: str, words: list[str], text: str) -> str | None:
    """``vs BASELINE``, ``ratio BASELINE`` or ``/ BASELINE [MEASURE]``; None if malformed."""
    pair = found.rows.get((task, config)), found.rows.get((task, words[1]))
    if words[0] == "vs" and len(words) == 2:
        return _versus(*pair)
    if words[0] == "ratio" and len(words) == 2:
        return _ratio(*pair)
    if words[0] == "/" and len(words) <= 3:
        measure = words[2] if len(words) == 3 else "mean"
        return _claim(found, task, config, words[1], measure, text)
    return None


def _one_seed(
    found: Results, task: str, config: str, seed: int, words: list[str], text: str
) -> str:
    """A field qualified by ``seedN``: its test score, ``ratio BASELINE``, ``curve`` or ``loss``
    (the scores from the summary, as every other field; the history from the run's results)."""
    plain = not words or (len(words) == 1 and words[0] in SEED_FIELDS)
    ratio = len(words) == 2 and words[0] == "ratio"
    if not (plain or ratio):
        raise ValueError(f"{{{{{text}}}}}: expected TASK/CONFIG seedN [{' | '.join(SEED_FIELDS)}]"
                         " or TASK/CONFIG ratio BASELINE seedN")  # fmt: skip
    if not any(
        (r.config, r.task_name, r.seed) == (config, task, seed) and not r.selects
        for r in found.suite.runs
    ):
        raise ValueError(f"{{{{{text}}}}}: suite {found.suite.name!r} does not run {config!r} "
                         f"with seed {seed}")  # fmt: skip
    what = words[0] if words else "score"
    if ratio or what == "score":
        configs = [config, words[1]] if ratio else [config]
        for other in configs[1:]:
            _check_config(found, task, other, text)
        rows = [found.rows.get((task, c)) for c in configs]
        values = [
            bench_claims.by_seed(r)[seed] for r in rows if r and seed in bench_claims.by_seed(r)
        ]
        if len(values) < len(configs):
            return PENDING
        return f"{values[0] / values[1]:.3f}" if ratio else f"{values[0]:.3f}"
    path = found.root / task / config / f"seed{seed}" / RESULTS
    if not path.is_file():
        return PENDING
    result = json.loads(path.read_text(encoding="utf-8"))
    metric = result["best_validation"]["metric"]
    if what == "curve":
        history = result["validation_history"]
        return (
            f"{_and([f'{h[metric]:.3f}' for h in history])} at step"
            f"{'s' if len(history) > 1 else ''} {_and([str(h['step']) for h in history])}"
        )
    loss = result["train_loss"]
    start, end = loss[:LOSS_WINDOW], loss[-LOSS_WINDOW:]
    return f"{statistics.fmean(start):.2f} → {statistics.fmean(end):.2f}"


def _single(found: Results, task: str, config: str, what: str, text: str) -> str:
    """One configuration's field (``score`` when the field names none)."""
    if what == "rates":
        return found.rates.get((task, config), PENDING)
    if what == "grid":
        return _grid(found.grids.get((task, config)), text)
    row = found.rows.get((task, config))
    if row is None or row["mean"] is None:
        return PENDING
    if what == "params":
        return f"{row['trainable_params']:,}"
    if what == "zero_shot":
        return PENDING if row["zero_shot"] is None else f"{row['zero_shot']:.3f}"
    if what == "seeds":
        values = bench_claims.by_seed(row)
        return f"{_and([f'{v:.3f}' for v in values.values()])} on {_seeds(list(values))}"
    out = f"{row['mean']:.3f}"
    if what == "score" and row["std"] is not None:
        out += f" ± {row['std']:.3f}"
    finished = len(bench_claims.by_seed(row))
    planned = found.suite.planned_seeds()[config]
    if what == "score" and finished < planned:
        out += f" ({finished} of {planned} seeds)"
    return out


def _check_config(found: Results, task: str, config: str, text: str) -> None:
    runs = found.suite.runs
    if not any(r.config == config for r in runs):
        raise ValueError(f"{{{{{text}}}}}: suite {found.suite.name!r} has no configuration "
                         f"{config!r}")  # fmt: skip
    if not any(r.config == config and r.task_name == task for r in runs):
        raise ValueError(f"{{{{{text}}}}}: suite {found.suite.name!r} does not run {config!r} "
                         f"on task {task!r}")  # fmt: skip


def _claim(found: Results, task: str, config: str, baseline: str, measure: str, text: str) -> str:
    declared = [
        c for c in found.suite.claims
        if (c.config, c.baseline, c.measure) == (config, baseline, measure)
    ]  # fmt: skip
    if not declared:
        raise ValueError(f"{{{{{text}}}}}: suite {found.suite.name!r} has no claim "
                         f"{config} / {baseline} on {measure}")  # fmt: skip
    for r in found.claims:
        if (r["config"], r["baseline"], r["measure"], r["task"]) == (config, baseline, measure,
                                                                      task):  # fmt: skip
            if r["ratio"] is None:
                return "n/a (baseline ≤ 0)"
            word = "**holds**" if r["holds"] else "**does not hold**"
            seeds = ""
            if bench_claims.provisional(r):
                seeds = f"; {r['n_seeds']} of {r['planned_seeds']} seeds"
            return f"{word} ({bench_claims.ratio_text(r)}, need {r['bound']}{seeds})"
    return PENDING


def _paired(row: dict[str, Any], base: dict[str, Any]) -> list[tuple[int, float, float]]:
    """(seed, value, baseline value) for each seed both rows have a test value on."""
    mine, theirs = bench_claims.by_seed(row), bench_claims.by_seed(base)
    return [(seed, value, theirs[seed]) for seed, value in mine.items() if seed in theirs]


def _ratio(row: dict[str, Any] | None, base: dict[str, Any] | None) -> str:
    pairs = [] if row is None or base is None else _paired(row, base)
    if not pairs:
        return PENDING
    mine, theirs = (statistics.fmean(p[i] for p in pairs) for i in (1, 2))
    return f"{mine / theirs:.3f}"


def _versus(row: dict[str, Any] | None, base: dict[str, Any] | None) -> str:
    if row is None or base is None:
        return PENDING
    groups: dict[str, list[int]] = {"ahead": [], "level": [], "behind": []}
    for seed, value, reference in _paired(row, base):
        diff = value - reference
        groups["level" if abs(diff) < LEVEL else "ahead" if diff > 0 else "behind"].append(seed)
    parts = [f"{word} on {_seeds(seeds)}" for word, seeds in groups.items() if seeds]
    if not parts:
        return PENDING
    if len(parts) == 1:
        word, seeds = next((w, s) for w, s in groups.items() if s)
        return f"{word} on every seed ({len(seeds)})" if len(seeds) > 1 else parts[0]
    return ", ".join(parts)


def _grid(choice: dict[str, Any] | None, text: str) -> str:
    if choice is None:
        raise ValueError(f"{{{{{text}}}}}: this configuration has no grid on that task")
    parts = []
    for i, point in enumerate(choice["points"]):
        value = point["mean"]
        label = point["label"].replace("=", " ").replace(",", ", ")
        score = "pending" if value is None else f"{value:.3f}"
        parts.append(f"{label}: {score}{' (chosen)' if i == choice['chosen'] else ''}")
    members = len(choice["points"][0]["validation"])
    group = f" (means over the {members} configurations of grid group {choice['group']!r})"
    return "; ".join(parts) + (group if members > 1 else "")


def _seeds(seeds: list[int]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {_and([str(s) for s in seeds])}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
