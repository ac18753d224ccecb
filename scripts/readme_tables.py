"""Fill the generated blocks of the README and docs/ from the committed results.

* ``docs/results.md``: each suite's ``<!-- SUITE-table -->`` block holds the table rows of
  ``bench/results/SUITE/summary.md`` verbatim (its run count and machine line included), and its
  ``<!-- SUITE-prose -->`` block the template ``bench/prose/SUITE.md`` rendered with every number
  filled from the committed results (:mod:`scripts/results_prose.py`).
* ``README.md``: the ``<!-- headline -->`` table (each figure from its result file, with the
  machine it ran on) and the ``<!-- quickstart-result -->`` sentence (the committed run of the
  README's own command, ``bench/results/quickstart/``).
* ``docs/training.md``: the ``<!-- lr-defaults -->`` table, each method's default learning rate(s)
  beside the ``fair`` suite's grid they were chosen from (:func:`grid_choices`).

``tests/test_readme.py`` checks every block, so no page can show numbers the committed results do
not. Run from the repository root after a suite run: ``python scripts/readme_tables.py``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import results_prose as prose

from lrpt.app.bench.suite import load_suite
from lrpt.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
SUITES = ("quick", "paper", "fair")
GRIDS = "Learning-rate selection:"  # the grid table, which stays in summary.md alone


def summary_table(suite: str, root: Path = ROOT) -> str | None:
    """The summary's lines from its run count on (run count, machine, table, claims, the
    comparison with another suite), up to its learning-rate grids; None if absent."""
    path = root / "bench" / "results" / suite / "summary.md"
    if not path.exists():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if " runs finished " in line), None)
    if start is None:
        raise ValueError(f"{path}: no 'N of M runs finished' line; rerun lrpt bench --summarize")
    end = next((i for i, line in enumerate(lines) if line.startswith(GRIDS)), len(lines))
    return "\n".join(lines[start:end]).strip()


def suite_prose(suite: str, root: Path = ROOT) -> str | None:
    """``bench/prose/SUITE.md`` with its fields filled from the suite's committed results; None
    if the suite has no prose template."""
    template = root / "bench" / "prose" / f"{suite}.md"
    if not template.exists():
        return None
    suites = root / "bench" / "suites"
    loaded = load_suite(suites / f"{suite}.toml")
    results = root / "bench" / "results" / suite
    return prose.render(template.read_text(encoding="utf-8"), loaded, results, suites).strip()


RESULTS = ROOT / "bench" / "results"
QUICKSTART = "quickstart"  # bench/results/quickstart/: the README's main command, run as written
GRID_SUITE = "fair"  # the suite whose learning-rate grids set the methods' defaults
GRID_TASKS = ("mr", "bbc")
# What the result files do not record: whether the machine was shared while they ran (from the
# notes taken at the time, docs/results.md and docs/serving.md).
CONDITIONS = {
    "speed/smollm2-135m-mr.json": "another job shared the CPU in part of the rounds",
    "serve/results.json": "nothing else running",
}


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _mean_std(row: dict) -> str:
    return f"{row['mean']:.3f} ± {row['std']:.3f}"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _rate(value: float) -> str:
    return f"{value:g}"


def _settings_text(settings: dict[str, float]) -> str:
    return ", ".join(f"{k} {_rate(v)}" for k, v in settings.items())


def grid_choices(root: Path = ROOT) -> dict[str, dict]:
    """For each method, the ``fair`` suite's grid at the method's first configuration there:
    ``{"config", "points": [(settings, mean validation over GRID_TASKS)], "chosen": settings}``.

    The rule that sets the defaults: the point with the best seed-0 validation accuracy at that
    configuration, averaged over MR and BBC; the first point (in the grid's order) on a tie."""
    rows = _read_json(root / "bench" / "results" / GRID_SUITE / "summary.json")
    assert isinstance(rows, list)
    first: dict[str, str] = {}
    for row in rows:
        first.setdefault(row["method"], row["config"])
    choices: dict[str, dict] = {}
    for method, config in first.items():
        grids = {r["task"]: r["grid"] for r in rows if r["config"] == config}
        if set(grids) != set(GRID_TASKS) or any(g is None for g in grids.values()):
            raise ValueError(f"{GRID_SUITE}: {config} has no grid on each of {GRID_TASKS}")
        labels = [p["label"] for p in grids[GRID_TASKS[0]]["points"]]
        points = []
        for index, label in enumerate(labels):
            scores = []
            for task in GRID_TASKS:
                point = grids[task]["points"][index]
                if point["label"] != label:
                    raise ValueError(f"{GRID_SUITE}: {config}'s grids differ between tasks")
                scores.append(point["validation"][config])
            settings = grids[GRID_TASKS[0]]["points"][index]["settings"]
            points.append((settings, sum(scores) / len(scores)))
        best = max(score for _, score in points)
        chosen = next(settings for settings, score in points if score == best)
        choices[method] = {"config": config, "points": points, "chosen": chosen}
    return choices


def declared_rates(method: str) -> dict[str, float]:
    """The learning rate(s) a method declares: ``lr`` (its training defaults) and each config
    option ending in ``_lr`` (its default)."""
    import dataclasses

    from lrpt.methods import method_class

    cls = method_class(method)
    options = {
        f.name: f.default
        for f in dataclasses.fields(cls.config_class)
        if f.name.endswith("_lr") and isinstance(f.default, float)
    }
    return {"lr": cls.training_defaults.lr} | options


def lr_defaults_table(root: Path = ROOT) -> str:
    """Each method's default learning rate(s) beside the grid they were chosen from."""
    lines = [
        f"| method | default | the {GRID_SUITE} suite's grid at its configuration: seed-0 "
        f"validation accuracy, mean of {' and '.join(t.upper() for t in GRID_TASKS)} "
        "(the choice in bold) |",
        "|---|---|---|",
    ]
    for method, choice in grid_choices(root).items():
        cells = []
        for settings, score in choice["points"]:
            text = f"{_settings_text(settings)}: {score:.4f}"
            cells.append(f"**{text}**" if settings == choice["chosen"] else text)
        lines.append(
            f"| `{method}` | {_settings_text(declared_rates(method))} | "
            f"{choice['config']}: {'; '.join(cells)} |"
        )
    return "\n".join(lines)


def _machine_text(machine: dict) -> str:
    return f"{machine['cpu']}, {machine['cpus']} cores"


def _suite_machines(suite: str, rows: list[dict], root: Path) -> str:
    """The distinct CPUs (and core counts) the seed runs of ``rows`` trained on."""
    seen: list[str] = []
    for row in rows:
        for seed in row["seeds"]:
            record = root / "bench" / "results" / suite / row["task"] / row["config"]
            machine = _read_json(record / f"seed{seed}" / "run.json")["machine"]
            text = _machine_text(machine)
            if text not in seen:
                seen.append(text)
    return "; ".join(seen)


def quickstart_record(root: Path = ROOT) -> tuple[dict, dict]:
    """The committed quick-start run: its ``results.json`` and ``record.json`` (the command as
    run, the machine, the wall time and whether other jobs shared the machine)."""
    folder = root / "bench" / "results" / QUICKSTART
    return _read_json(folder / "results.json"), _read_json(folder / "record.json")


def _conditions(record: dict) -> str:
    if not record["shared"]:
        return "nothing else running"
    return f"shared with other jobs (mean load average {record['load_average']['mean']:.1f})"


def quickstart_sentence(root: Path = ROOT, up: str = "") -> str:
    """The quick start's figure, from the committed run of the README's own command; ``up`` is
    the path from the page to the repository root (``../`` for docs/)."""
    results, record = quickstart_record(root)
    params = results["trainable_params"]["total"]
    test = results["test"]["accuracy"]
    zero = results["zero_shot_test"]["accuracy"]
    sizes = results["task"]["sizes"]
    return (
        f"Measured with exactly this command ({record['date']}, seed {results['seed']}, lr "
        f"{_rate(results['training']['lr'])}, the method's default; {params:,} trainable "
        f"parameters): **{_pct(test)}** test accuracy against **{_pct(zero)}** zero-shot on MR's "
        f"{sizes['test']:,} test reviews. It took {_duration(record['wall_seconds'])} end to end "
        f"({results['seconds_per_step']:.1f} s per training step) on {record['machine']['cpu']} "
        f"({record['machine']['cpus']} cores), {_conditions(record)}. The run: "
        f"[bench/results/quickstart/]({up}bench/results/quickstart/)."
    )


def headline_table(root: Path = ROOT) -> str:
    """The README's table of headline figures, each from its committed result file."""
    results, record = quickstart_record(root)
    rows = [
        (
            f"The quick start's command: ULPT, {results['trainable_params']['total']:,} "
            f"parameters, {results['steps']} steps on MR",
            f"**{_pct(results['test']['accuracy'])}** test accuracy (zero-shot "
            f"{_pct(results['zero_shot_test']['accuracy'])})",
            f"{_machine_text(record['machine'])} ({'shared' if record['shared'] else 'quiet'})",
            "bench/results/quickstart/results.json",
        )
    ]
    fair = _read_json(root / "bench" / "results" / GRID_SUITE / "summary.json")
    pick = {(r["task"], r["config"]): r for r in fair}
    pairs = [(pick[(t, "ulpt-n100-r2")], pick[(t, "pt-n100")]) for t in GRID_TASKS]
    ulpt, pt = pairs[0]
    scores = "; ".join(
        f"{u['task'].upper()} {_mean_std(u)} against {_mean_std(p)}" for u, p in pairs
    )
    rows.append(
        (
            f"ULPT ({ulpt['trainable_params']:,} parameters) against prompt tuning "
            f"({pt['trainable_params']:,}), n = 100, tuned learning rates, 3 seeds",
            f"test accuracy {scores}",
            _suite_machines(GRID_SUITE, [r for pair in pairs for r in pair], root),
            f"bench/results/{GRID_SUITE}/summary.md",
        )
    )
    cpu = _read_json(root / "bench" / "results" / "speed" / "smollm2-135m-mr.json")
    peak = {t["name"]: t["peak_mb"] for t in cpu["training"]}
    rows.append(
        (
            f"A training step of lrpt's `pt` (shared prefix) against PEFT's prompt tuning, "
            f"SmolLM2-135M, n = {cpu['num_tokens']}, batch {cpu['batch_size']}, same loss",
            f"**{cpu['training_vs_peft']['pt']['median']:.2f}×** the step time (median of "
            f"{cpu['rounds']} alternating rounds), {peak['pt']:,.0f} MB against "
            f"{peak['peft pt']:,.0f} MB peak",
            f"{cpu['machine']}, {cpu['torch_threads']} threads; "
            f"{CONDITIONS['speed/smollm2-135m-mr.json']}",
            "bench/results/speed/smollm2-135m-mr.md",
        )
    )
    gpu = {
        b: _read_json(root / "bench" / "results" / "gpu" / f"speed-llama-1b-bf16-b{b}.json")
        for b in (16, 256)
    }
    ratios = {b: d["training_vs_peft"]["pt"]["median"] for b, d in gpu.items()}
    rows.append(
        (
            f"The same on a GPU ({gpu[256]['model']}, bf16)",
            f"**{ratios[256]:.2f}×** PEFT's step time at batch 256; {ratios[16]:.2f}× (slower) "
            f"at batch 16",
            gpu[256]["device_name"],
            "bench/results/gpu/speed-llama-1b-bf16-b256.md",
        )
    )
    serve = _read_json(root / "bench" / "results" / "serve" / "results.json")
    summary = (root / "bench" / "results" / "serve" / "summary.md").read_text(encoding="utf-8")
    registered = re.search(r"(\d+) registered prompts", summary)
    mixed, single, peft = (serve[k]["throughput_rps"] for k in ("mixed", "single", "peft"))
    rows.append(
        (
            f"`lrpt serve`: {int(registered.group(1)) if registered else '?':,} prompts on one "
            f"copy of SmolLM2-135M, {serve['mixed']['concurrency']} clients over "
            f"{serve['mixed']['prompts']} of them",
            f"{mixed:.2f} req/s: **{mixed / single:.2f}×** a single prompt's throughput, "
            f"{mixed / peft:.1f}× PEFT one request at a time",
            f"{serve['machine']}; {CONDITIONS['serve/results.json']}",
            "bench/results/serve/summary.md",
        )
    )
    lines = ["| measured | result | machine | source |", "|---|---|---|---|"]
    for what, result, machine, source in rows:
        lines.append(f"| {what} | {result} | {machine} | [{source}]({source}) |")
    return "\n".join(lines)


def _fill(text: str, name: str, content: str | None, where: str = "README") -> str:
    block = re.compile(rf"(<!-- {name} -->\n)(.*?)(<!-- /{name} -->)", re.S)
    if content is None or not block.search(text):
        print(f"{name}: nothing to fill or no block in {where}, left as it is", file=sys.stderr)
        return text
    return block.sub(lambda m: f"{m.group(1)}{content}\n{m.group(3)}", text)


def pages(root: Path = ROOT) -> dict[str, dict[str, str | None]]:
    """Each page (relative to the root) → its generated blocks' contents."""
    results: dict[str, str | None] = {}
    for suite in SUITES:
        results[f"{suite}-table"] = summary_table(suite, root)
        if (root / "bench" / "prose" / f"{suite}.md").exists():
            results[f"{suite}-prose"] = suite_prose(suite, root)
    return {
        "README.md": {
            "headline": headline_table(root),
            "quickstart-result": quickstart_sentence(root),
        },
        "docs/results.md": results,
        "docs/training.md": {
            "lr-defaults": lr_defaults_table(root),
            "quickstart-result": quickstart_sentence(root, up="../"),
        },
    }


def main() -> int:
    for page, blocks in pages().items():
        path = ROOT / page
        text = path.read_text(encoding="utf-8")
        for name, content in blocks.items():
            text = _fill(text, name, content, page)
        atomic_write_text(path, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
