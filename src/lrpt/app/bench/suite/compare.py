"""A suite against another suite's results, and its longer budgets against their sources.

A suite file's top-level ``compare = "OTHER"`` names a suite whose results lie beside its own
(``RESULTS/OTHER/``: its ``summary.json`` and its runs' ``results.json``). The summary then
gains, from the committed results alone:

- **configurations**: every (task, configuration name) both suites have finished, the other
  suite's test mean beside this one's, the difference in points, and the learning rates each
  trained at (from their first finished seed's ``results.json``);
- **claims**: every claim of this suite that the other suite makes too, their ratios and
  verdicts side by side and whether the verdict moved. Claims match on (configuration,
  baseline, measure, task); a configuration with ``grid_from = "X"`` (a longer budget at X's
  rate) matches as X;
- **longer budgets**: every claim on a ``grid_from`` configuration beside this suite's own
  claim on the source configurations (say 1,000 steps against 150), and whether it moved.

This module formats; :mod:`lrpt.app.bench.suite.report` reads the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lrpt.app.bench.suite.claims import provisional, ratio_text

ClaimKey = tuple[str, str, str, str]  # (config, baseline, measure, task)


def _key(result: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> ClaimKey:
    sources = sources or {}
    config, baseline = result["config"], result["baseline"]
    return (sources.get(config, config), sources.get(baseline, baseline), result["measure"],
            result["task"])  # fmt: skip


def _verdict(result: dict[str, Any] | None) -> str:
    """``0.975 holds`` (``*`` when on fewer seeds than planned), or ``—``."""
    if result is None:
        return "—"
    if result["ratio"] is None:
        return "n/a (baseline ≤ 0)"
    word = "holds" if result["holds"] else "fails"
    return f"{ratio_text(result)} {word}{'*' if provisional(result) else ''}"


def moved(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    """How a verdict changed: ``fails → holds``, ``holds → fails``, ``unchanged``, or ``—``."""
    if before is None or after is None or before["holds"] is None or after["holds"] is None:
        return "—"
    if before["holds"] == after["holds"]:
        return "unchanged"
    return "fails → holds" if after["holds"] else "holds → fails"


def claim_pairs(
    mine: list[dict[str, Any]], theirs: list[dict[str, Any]], sources: Mapping[str, str]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each of this suite's claim results with the other suite's result on the same (mapped)
    key, for the keys the other suite has a result on."""
    by_key = {_key(r): r for r in theirs}
    return [(r, by_key[_key(r, sources)]) for r in mine if _key(r, sources) in by_key]


def budget_pairs(
    mine: list[dict[str, Any]], sources: Mapping[str, str]
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Each claim result on a ``grid_from`` configuration with this suite's result on the source
    configurations (None while that has not finished)."""
    by_key = {_key(r): r for r in mine}
    return [
        (r, by_key.get(_key(r, sources)))
        for r in mine
        if r["config"] in sources or r["baseline"] in sources
    ]


def _score(row: Mapping[str, Any] | None) -> str:
    if row is None or row["mean"] is None:
        return "—"
    std = "" if row["std"] is None else f" ± {row['std']:.3f}"
    return f"{row['mean']:.3f}{std} ({row['n_seeds']})"


def markdown(
    other: str,
    rows: list[dict[str, Any]],
    other_rows: list[dict[str, Any]],
    rates: Mapping[tuple[str, str], str],
    other_rates: Mapping[tuple[str, str], str],
    claims: list[dict[str, Any]],
    other_claims: list[dict[str, Any]],
    sources: Mapping[str, str],
) -> list[str]:
    """The three tables (each left out when it has no line)."""
    lines: list[str] = []
    theirs = {(r["task"], r["config"]): r for r in other_rows}
    shared = [r for r in rows if (r["task"], r["config"]) in theirs]
    if shared:
        lines += [
            "",
            f"Against suite `{other}` (its committed results; test mean ± std (seeds) and the "
            "rates each trained at):",
            "",
            f"| task | config | `{other}` | rates there | this suite | rates here | change |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in shared:
            key = (row["task"], row["config"])
            there = theirs[key]
            change = "—"
            if row["mean"] is not None and there["mean"] is not None:
                change = f"{100 * (row['mean'] - there['mean']):+.1f} points"
            lines.append(
                f"| {row['task']} | {row['config']} | {_score(there)} | {other_rates.get(key, '—')}"
                f" | {_score(row)} | {rates.get(key, '—')} | {change} |"
            )
    pairs = claim_pairs(claims, other_claims, sources)
    if pairs:
        lines += [
            "",
            f"Claims against suite `{other}` (ratio and verdict; a configuration with a longer "
            f"budget is matched to `{other}`'s at its source's name; * fewer seeds than planned):",
            "",
            f"| claim | task | `{other}` | this suite | verdict |",
            "|---|---|---|---|---|",
        ]
        for mine, base in pairs:
            lines.append(
                f"| {mine['text']} | {mine['task']} | {_verdict(base)} | {_verdict(mine)} "
                f"| {moved(base, mine)} |"
            )
    budgets = budget_pairs(claims, sources)
    if budgets:
        lines += [
            "",
            "Longer budgets against their sources in this suite (`grid_from`: the same "
            "configuration at the rate its grid chose):",
            "",
            "| claim | task | at the source's budget | at this budget | verdict |",
            "|---|---|---|---|---|",
        ]
        for mine, short in budgets:
            lines.append(
                f"| {mine['text']} | {mine['task']} | {_verdict(short)} | {_verdict(mine)} "
                f"| {moved(short, mine)} |"
            )
    return lines
