"""A suite against another suite's committed results (``compare = "OTHER"``): the file key's
errors, and the three tables built from finished runs on disk, with pinned values: the same
configurations side by side with their rates, the shared claims' verdicts, and the longer
budgets (``grid_from``) against their sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lrpt.app.bench.suite import load_suite, write_summary
from lrpt.app.bench.suite.compare import moved
from lrpt.app.bench.suite.grid import resolve
from lrpt.app.bench.suite.records import RUN_RECORD

BASE = (
    'description = "before"\n[defaults]\nmodel = "tiny-llama"\ntasks = ["mr"]\nseeds = [0, 1]\n'
    '[[run]]\nname = "pt"\nmethod = "pt"\n'
    '[[run]]\nname = "ulpt"\nmethod = "ulpt"\noptions = { rank = 2 }\n'
    '[[claim]]\ntext = "ulpt keeps 97 %"\nconfig = "ulpt"\nbaseline = "pt"\nat_least = 0.97\n'
)
NEW = (
    'description = "after"\ncompare = "base"\n[defaults]\nmodel = "tiny-llama"\n'
    'tasks = ["mr"]\nseeds = [0, 1]\n'
    '[[run]]\nname = "pt"\nmethod = "pt"\ngrid = { lr = [0.1, 0.01] }\n'
    '[[run]]\nname = "ulpt"\nmethod = "ulpt"\noptions = { rank = 2 }\n'
    "grid = { lr = [0.1, 0.01] }\n"
    '[[run]]\nname = "pt-long"\nmethod = "pt"\nstage = 1\nsteps = 1000\ngrid_from = "pt"\n'
    '[[run]]\nname = "ulpt-long"\nmethod = "ulpt"\noptions = { rank = 2 }\nstage = 1\n'
    'steps = 1000\ngrid_from = "ulpt"\n'
    '[[claim]]\ntext = "ulpt keeps 97 %"\nconfig = "ulpt"\nbaseline = "pt"\nat_least = 0.97\n'
    '[[claim]]\ntext = "ulpt keeps 97 %, long"\nconfig = "ulpt-long"\nbaseline = "pt-long"\n'
    "at_least = 0.97\n"
)


def finish(root: Path, suite: Any, run: Any, score: float, lr: float, **rates: float) -> None:
    """A finished run as the runner leaves it: ``run.json`` and the ``results.json`` fields
    the summary reads (a grid run's score is its validation, a tested run's its test)."""
    settled = resolve(suite, run, root)
    assert settled is not None
    out = root / run.id
    out.mkdir(parents=True)
    record = {
        "settings": settled.settings(), "method": run.method, "task": run.task,
        "config": run.config, "seed": run.seed, "model": "tiny-llama", "metric": "accuracy",
        "test": None if run.selects else score, "best_validation": score, "zero_shot": 0.5,
        "trainable_params": 10, "artifact_bytes": 2048, "sec_per_step": 1.0,
        "peak_rss_mb": 100.0, "finished": "2026-12-05T00:00:00+00:00",
        "machine": {"cpu": "c", "cpus": 2, "os": "o", "python": "3", "torch": "t"},
    }  # fmt: skip
    (out / RUN_RECORD).write_text(json.dumps(record))
    results = {"training": {"lr": lr}, "config": {"rank": 2, **rates}}
    (out / "results.json").write_text(json.dumps(results))


def test_compare_key_errors(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(BASE)
    for value, message in [
        ("3", "compare must be the name of another suite, got 3"),
        ('"new"', "compare names the suite itself"),
        ('"gone"', "compare 'gone': no suite file"),
    ]:
        path = tmp_path / "new.toml"
        path.write_text(NEW.replace('compare = "base"', f"compare = {value}"))
        with pytest.raises(ValueError, match=message):
            load_suite(path)


def test_tables_from_both_suites_results(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "new.toml").write_text(NEW)
    base, new = load_suite(tmp_path / "base.toml"), load_suite(tmp_path / "new.toml")
    assert new.compare == str(tmp_path / "base.toml")
    assert new.sources == {"pt-long": "pt", "ulpt-long": "ulpt"}
    before, after = tmp_path / "results" / "base", tmp_path / "results" / "new"
    runs = {r.id: r for r in base.runs}
    for seed, (pt, ulpt) in enumerate([(0.80, 0.70), (0.82, 0.74)]):
        finish(before, base, runs[f"mr/pt/seed{seed}"], pt, 0.01)
        finish(before, base, runs[f"mr/ulpt/seed{seed}"], ulpt, 0.1)
    write_summary(base, before)
    runs = {r.id: r for r in new.runs}
    for config, validation in [("pt", (0.5, 0.6)), ("ulpt", (0.6, 0.7))]:
        for label, value in zip(("lr=0.1", "lr=0.01"), validation, strict=True):
            finish(after, new, runs[f"mr/{config}/grid/{label}/seed0"], value, 0.0)
    scores = {"pt": (0.80, 0.84), "ulpt": (0.80, 0.82), "pt-long": (0.85, 0.85),
              "ulpt-long": (0.80, 0.80)}  # fmt: skip
    for config, values in scores.items():
        for seed, value in enumerate(values[: 1 if config == "ulpt-long" else 2]):
            finish(after, new, runs[f"mr/{config}/seed{seed}"], value, 0.01, lowrank_lr=5e-4)
    write_summary(new, after)
    text = (after / "summary.md").read_text()
    lines = text.splitlines()

    def table(heading: str) -> list[str]:
        start = next(i for i, line in enumerate(lines) if line.startswith(heading))
        rows = []
        for line in lines[start + 4 :]:
            if not line.startswith("|"):
                break
            rows.append(line)
        return rows

    assert table("Against suite `base`") == [
        "| mr | pt | 0.810 ± 0.014 (2) | lr 0.01 | 0.820 ± 0.028 (2) | lr 0.01, lowrank_lr 0.0005 "
        "| +1.0 points |",
        "| mr | ulpt | 0.720 ± 0.028 (2) | lr 0.1 | 0.810 ± 0.014 (2) | lr 0.01, lowrank_lr 0.0005 "
        "| +9.0 points |",
    ]  # the lr resolved in results.json and the method's *_lr options
    # ulpt-long has one of its two seeds: the paired comparison uses seed 0 alone (0.80 / 0.85)
    assert table("Claims against suite `base`") == [
        "| ulpt keeps 97 % | mr | 0.889 fails | 0.988 holds | fails → holds |",
        "| ulpt keeps 97 %, long | mr | 0.889 fails | 0.941 fails* | unchanged |",
    ]
    assert table("Longer budgets") == [
        "| ulpt keeps 97 %, long | mr | 0.988 holds | 0.941 fails* | holds → fails |",
    ]


def test_moved_and_no_comparison_without_the_key(tmp_path: Path) -> None:
    holds, fails = {"holds": True}, {"holds": False}
    assert [moved(fails, holds), moved(holds, fails), moved(holds, holds)] == [
        "fails → holds", "holds → fails", "unchanged",
    ]  # fmt: skip
    assert moved(None, holds) == moved(holds, {"holds": None}) == "—"
    (tmp_path / "base.toml").write_text(BASE)
    base = load_suite(tmp_path / "base.toml")
    assert base.compare is None and base.sources == {}
    root = tmp_path / "results" / "base"
    for run in base.runs:
        finish(root, base, run, 0.8, 0.01)
    write_summary(base, root)
    text = (root / "summary.md").read_text()
    assert "Against suite" not in text and "Longer budgets" not in text
    assert "| ulpt keeps 97 % | mr | ulpt | pt | mean | 0.800 ± 0.000 |" in text
