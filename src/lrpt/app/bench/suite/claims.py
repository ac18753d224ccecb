"""A suite's claims: papers' statements checked against its summary rows.

A claim compares one configuration with a baseline configuration of the same suite, task by
task, as the ratio of one summary measure::

    [[claim]]
    text = "ULPT r = 2 keeps ≥ 97 % of pt's accuracy"   # the paper's statement, in words
    config = "ulpt-n100-r2"
    baseline = "pt-n100"
    measure = "mean"          # mean (test metric), sec_per_step, trainable_params, peak_rss_mb
    at_least = 0.97           # the claim holds when config / baseline ≥ 0.97 (or: at_most = ...)

For every task on which both configurations have finished runs, :func:`evaluate` gives the two
values (test means over the seeds both have finished), their ratio and the verdict (``holds``
or ``fails``), with the seeds each value rests on: a verdict over fewer seeds than the suite
plans is marked as provisional in the table (except on ``trainable_params``, which no seed
changes). No statistical test is made: the table shows the standard deviations beside the
verdict.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

MEASURES = ("mean", "sec_per_step", "trainable_params", "peak_rss_mb")
_KEYS = {"text", "config", "baseline", "measure", "at_least", "at_most"}


@dataclass(frozen=True)
class Claim:
    """``config / baseline`` of ``measure`` is at least ``at_least`` or at most ``at_most``."""

    text: str
    config: str
    baseline: str
    measure: str = "mean"
    at_least: float | None = None
    at_most: float | None = None

    def holds(self, ratio: float) -> bool:
        if self.at_least is not None:
            return ratio >= self.at_least
        return ratio <= self.at_most  # type: ignore[operator]

    @property
    def bound(self) -> str:
        if self.at_least is not None:
            return f"≥ {self.at_least:g}"
        return f"≤ {self.at_most:g}"


def parse_claims(where: str, entries: Any, configs: set[str]) -> list[Claim]:
    """The suite's ``[[claim]]`` tables, checked against its configuration names.

    Raises:
        ValueError: a missing or unknown key, an unknown configuration or measure, a bad bound.
    """
    if not isinstance(entries, list):
        raise ValueError(f"{where}: claims must be [[claim]] tables")
    claims = []
    for i, entry in enumerate(entries, 1):
        at = f"{where} [[claim]] #{i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{at}: must be a table")
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise ValueError(f"{at}: unknown key(s) {', '.join(unknown)}")
        for key in ("text", "config", "baseline"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ValueError(f"{at}: {key} must be a non-empty string")
        for key in ("config", "baseline"):
            if entry[key] not in configs:
                raise ValueError(f"{at}: {key} {entry[key]!r} is not a [[run]] name of the suite")
        measure = entry.get("measure", "mean")
        if measure not in MEASURES:
            raise ValueError(f"{at}: measure must be one of {', '.join(MEASURES)}, got {measure!r}")
        bounds = [k for k in ("at_least", "at_most") if k in entry]
        if len(bounds) != 1:
            raise ValueError(f"{at}: give exactly one of at_least, at_most")
        value = entry[bounds[0]]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{at}: {bounds[0]} must be a number > 0, got {value!r}")
        claims.append(Claim(**{**entry, bounds[0]: float(value)}))
    return claims


def evaluate(
    claims: list[Claim], rows: list[dict[str, Any]], planned: dict[str, int]
) -> list[dict[str, Any]]:
    """One result per claim and task where both configurations have a summary row.

    On ``mean`` the two configurations are compared over the seeds both have a test value for
    (a paired comparison: a seed that only one of them has finished is left out). A baseline
    value ≤ 0 gives no ratio (``ratio`` and ``holds`` None). ``planned`` maps a configuration
    to the number of seeds the suite gives it.
    """
    by_key = {(row["task"], row["config"]): row for row in rows}
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    results = []
    for claim in claims:
        for task in tasks:
            ours, base = by_key.get((task, claim.config)), by_key.get((task, claim.baseline))
            if ours is None or base is None:
                continue
            compared = _compare(claim.measure, ours, base)
            if compared is None:
                continue
            value, value_std, reference, reference_std, n_seeds = compared
            ratio = value / reference if reference > 0 else None
            results.append(
                {
                    "text": claim.text,
                    "task": task,
                    "config": claim.config,
                    "baseline": claim.baseline,
                    "measure": claim.measure,
                    "value": value,
                    "value_std": value_std,
                    "reference": reference,
                    "reference_std": reference_std,
                    "ratio": ratio,
                    "bound": claim.bound,
                    "limit": claim.at_least if claim.at_least is not None else claim.at_most,
                    "holds": None if ratio is None else claim.holds(ratio),
                    "n_seeds": n_seeds,
                    "planned_seeds": min(planned[claim.config], planned[claim.baseline]),
                }
            )
    return results


def _compare(
    measure: str, ours: dict[str, Any], base: dict[str, Any]
) -> tuple[float, float | None, float, float | None, int] | None:
    """(value, its std, reference, its std, seeds) of two summary rows, None if not comparable."""
    if measure != "mean":
        value, reference = ours[measure], base[measure]
        if value is None or reference is None:
            return None
        return value, None, reference, None, min(ours["n_seeds"], base["n_seeds"])
    mine, theirs = by_seed(ours), by_seed(base)
    seeds = sorted(mine.keys() & theirs.keys())
    if not seeds:
        return None
    a, b = [mine[s] for s in seeds], [theirs[s] for s in seeds]
    return statistics.fmean(a), _std(a), statistics.fmean(b), _std(b), len(seeds)


def by_seed(row: dict[str, Any]) -> dict[int, float]:
    """A summary row's test values by seed, leaving out seeds without one."""
    return {s: v for s, v in zip(row["seeds"], row["values"], strict=True) if v is not None}


def provisional(result: dict[str, Any]) -> bool:
    """Whether a claim result rests on fewer seeds than planned (no seed changes a count)."""
    return result["n_seeds"] < result["planned_seeds"] and result["measure"] != "trainable_params"


def ratio_text(result: dict[str, Any]) -> str:
    """The ratio to 3 decimals, or more where 3 would round it onto its bound (0.9996 against
    ≥ 1 reads ``0.9996``, not ``1.000`` beside ``fails``); ``—`` without a ratio."""
    ratio, limit = result["ratio"], result["limit"]
    if ratio is None:
        return "—"
    digits = 3
    while digits < 6 and ratio != limit and round(ratio, digits) == limit:
        digits += 1
    return f"{ratio:.{digits}f}"


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def _value(value: float, std: float | None, measure: str) -> str:
    if measure == "trainable_params":
        return f"{value:,.0f}"
    text = f"{value:.3f}" if measure == "mean" else f"{value:,.2f}"
    return text if std is None else f"{text} ± {std:.3f}"


def markdown(results: list[dict[str, Any]]) -> list[str]:
    """The claims table (empty list when no claim can be evaluated yet)."""
    if not results:
        return []
    lines = [
        "",
        "Claims (config / baseline; a verdict on fewer seeds than planned is marked *):",
        "",
        "| claim | task | config | baseline | measure | config value | baseline value | ratio "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        verdict = {True: "holds", False: "fails", None: "n/a (baseline ≤ 0)"}[r["holds"]]
        ratio = ratio_text(r)
        if provisional(r):
            verdict += f"* ({r['n_seeds']} seed{'s' if r['n_seeds'] > 1 else ''})"
        lines.append(
            f"| {r['text']} | {r['task']} | {r['config']} | {r['baseline']} | {r['measure']} "
            f"| {_value(r['value'], r['value_std'], r['measure'])} "
            f"| {_value(r['reference'], r['reference_std'], r['measure'])} "
            f"| {ratio} (need {r['bound']}) | {verdict} |"
        )
    if any(r["measure"] == "sec_per_step" for r in results):
        lines += [
            "",
            "s/step ratios compare runs timed in separate processes, at different times; "
            "`lrpt bench --speed` times methods side by side.",
        ]
    return lines
