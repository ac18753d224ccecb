"""A suite's summary from its finished runs: ``summary.json`` (one row per configuration and task),
``summary.md`` (the table, the claims, the comparison, the grids) and ``summary.png``."""

from __future__ import annotations

import io
import json
import statistics
from pathlib import Path
from typing import Any

from lrpt.app.bench.machine import machine_line
from lrpt.app.bench.suite import claims as bench_claims
from lrpt.app.bench.suite import compare as bench_compare
from lrpt.app.bench.suite.grid import finished_points, grid_selections, resolve
from lrpt.app.bench.suite.records import finished_record
from lrpt.app.bench.suite.schema import Suite, load_suite
from lrpt.app.training.outdir import RESULTS
from lrpt.fileio import atomic_write_bytes, atomic_write_text

SUMMARY_FILES = ("summary.json", "summary.md", "summary.png")


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
    its ``grid`` selection (:func:`~.grid.grid_choice`), and ``summary.md`` lists every grid.
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
    if not rows and not any(finished_points(g, c) for (_, c), g in grids.items()):
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
    """The summary's tables against the suite ``suite.compare`` names (:mod:`.compare`), read
    from that suite's results beside ``root``; its longer budgets against their sources."""
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


def fmt(value: float | None, digits: int = 3) -> str:
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
            finished_points(g, config) for (_, config), g in grids.items() if config in own
        )
        lines[-1] += f" Grid runs: {finished} of {len(suite.runs) - len(tested)} finished."
    lines += [f"Machine: {machine_line(json.loads(text))}." for text in sorted(machines)]
    lines += [
        "",
        "| task | config | method | seeds | test (mean ± std) | zero-shot | trainable params "
        "| artifact | s/step | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        score = fmt(row["mean"]) + ("" if row["std"] is None else f" ± {row['std']:.3f}")
        rss = "—" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:,.0f} MB"
        lines.append(
            f"| {row['task']} | {row['config']} | `{row['method']}` | {row['n_seeds']} "
            f"| {row['metric']} {score} | {fmt(row['zero_shot'])} "
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
                f"`{point['label']}` | {fmt(point['validation'].get(config))} | "
                f"{fmt(point['mean'])} | {mark} |"
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
