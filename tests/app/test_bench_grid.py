"""Learning-rate grids in suites: the grid's forms and errors, the choice from validation scores
alone (single entries and groups), and a tiny suite end to end (grid runs never test, the seeds
train at the chosen rate, the summary lists the grid, a rerun trains nothing)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lrpt.app.bench.suite import load_suite, runner, write_summary
from lrpt.app.bench.suite.grid import grid_choice, resolve
from lrpt.app.bench.suite.records import RUN_RECORD
from lrpt.app.cli import main

ROOT = Path(__file__).resolve().parents[2]
TOPICS = ROOT / "tests" / "fixtures" / "topics.jsonl"
A = '[[run]]\nname = "a"\nmethod = "pt"\n'  # entries of the error cases
B = '[[run]]\nname = "b"\nmethod = "pt"\n'
A_GRID = A + "grid = { lr = [0.1, 0.01] }\n"


def write_suite(tmp_path: Path, text: str, defaults: str = "") -> Path:
    path = tmp_path / "g.toml"
    if "tasks" not in defaults:
        defaults += 'tasks = ["mr"]\n'
    path.write_text(f'description = "grid"\n[defaults]\nmodel = "tiny-llama"\n{defaults}{text}')
    return path


def test_grid_forms_and_order(tmp_path: Path) -> None:
    """A table of lists is their product; an array of tables is a list of pairs; grid runs use
    the first seed, come first in their stage, and never evaluate the test split."""
    text = (
        '[[run]]\nname = "pt"\nmethod = "pt"\noptions = { num_tokens = 4 }\n'
        "grid = { lr = [0.1, 0.01], weight_decay = [0.0, 0.1] }\n"
        '[[run]]\nname = "dept"\nmethod = "dept"\noptions = { num_tokens = 4, rank = 2 }\n'
        "grid = [{ lr = 0.3, lowrank_lr = 5e-4 }, { lr = 0.03, lowrank_lr = 5e-3 }]\n"
    )
    suite = load_suite(write_suite(tmp_path, text, "seeds = [3, 4]\n"))
    ids = [run.id for run in suite.runs]
    assert ids == [
        "mr/pt/grid/lr=0.1,weight_decay=0.0/seed3",
        "mr/pt/grid/lr=0.1,weight_decay=0.1/seed3",
        "mr/pt/grid/lr=0.01,weight_decay=0.0/seed3",
        "mr/pt/grid/lr=0.01,weight_decay=0.1/seed3",
        "mr/dept/grid/lr=0.3,lowrank_lr=0.0005/seed3",
        "mr/dept/grid/lr=0.03,lowrank_lr=0.005/seed3",
        "mr/pt/seed3", "mr/dept/seed3", "mr/pt/seed4", "mr/dept/seed4",
    ]  # fmt: skip
    pair = suite.runs[5]
    assert pair.options == {"num_tokens": 4, "rank": 2, "lowrank_lr": 5e-3}  # a method option
    assert pair.training == {"model": "tiny-llama", "lr": 0.03, "evaluate_test": False}
    assert pair.spec(Path("o")).training.evaluate_test is False
    final = suite.runs[7]
    assert final.waits_for_grid and final.training == {"model": "tiny-llama"}
    assert final.spec(Path("o")).training.evaluate_test is True
    assert suite.planned_seeds() == {"pt": 2, "dept": 2}  # grid runs are not tested seeds


def test_grid_from_takes_another_entrys_choice(tmp_path: Path) -> None:
    """A longer run at the rate another entry's grid chose: no grid runs of its own."""
    text = (
        '[[run]]\nname = "short"\nmethod = "pt"\ngrid = { lr = [0.1, 0.01] }\n'
        '[[run]]\nname = "long"\nmethod = "pt"\ngrid_from = "short"\nsteps = 1000\nstage = 1\n'
    )
    suite = load_suite(write_suite(tmp_path, text))
    runs = {run.id: run for run in suite.runs}
    assert len(runs) == 4  # no grid runs of its own (their order: test_bench_suite.py)
    root = tmp_path / "results"
    finish(root, runs["mr/short/grid/lr=0.1/seed0"], 0.5)
    long = runs["mr/long/seed0"]
    assert long.waits_for_grid and resolve(suite, long, root) is None
    finish(root, runs["mr/short/grid/lr=0.01/seed0"], 0.75)
    resolved = resolve(suite, long, root)
    assert resolved is not None and resolved.training == {"model": "tiny-llama", "lr": 0.01,
                                                          "steps": 1000}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (A + "grid = { lr = 0.1 }\n", "grid must be a table of non-empty lists"),
        (A + "grid = { lr = [0.1] }\n", "at least 2 points, got 1"),
        (A + "grid = { lr = [0.1, 0.1] }\n", "the same point twice"),
        (A + "grid = [{ lr = 0.1 }, { steps = 3 }]\n", "every grid point must set the same keys"),
        (A + "grid = { seed = [1, 2] }\n", "seed cannot be in a grid"),
        (A + "grid = { evaluate_test = [true, false] }\n", "evaluate_test cannot be in a grid"),
        (A + "grid = { lr = [0.1, -1.0] }\n", "lr must be > 0, got -1.0"),
        (A + "grid = { rank = [1, 2] }\n", "does not use --rank"),
        (A + 'grid = { init = ["a/b", "vocab"] }\n', "does not make a directory name"),
        (A + 'grid_group = "g"\n', "grid_group 'g' without a grid"),
        (A + "grid = 3\n", "grid must be a table of lists"),
        (A_GRID + B + 'grid_from = "nope"\n', "grid_from 'nope' is not an entry with a grid"),
        (A_GRID + B + 'grid_from = "a"\ntasks = ["bbc"]\n', "grid_from 'a' has no grid on bbc"),
        (A_GRID + B + 'grid_from = "a"\ngrid = { lr = [1.0, 2.0] }\n', "grid_from takes another"),
        (A_GRID + 'grid_group = "g"\n' + B + 'grid = { lr = [0.1, 0.03] }\ngrid_group = "g"\n',
         "grid_group 'g' has other points in b than in a"),
    ],
)  # fmt: skip
def test_grid_errors(tmp_path: Path, text: str, message: str) -> None:
    """A malformed grid, grid_group or grid_from: one error naming it."""
    with pytest.raises(ValueError, match=message):
        load_suite(write_suite(tmp_path, text))


def finish(root: Path, run: Any, validation: float | None, test: float | None = None) -> None:
    """A finished run's record, as the runner writes it (the fields selection reads)."""
    out = root / run.id
    out.mkdir(parents=True)
    record = {"settings": run.settings(), "best_validation": validation, "test": test}
    (out / RUN_RECORD).write_text(json.dumps(record))


def test_choice_by_validation_alone_and_by_group(tmp_path: Path) -> None:
    """Each entry alone picks its best validation point (the first on a tie; test scores are
    not looked at); a group picks the best mean over its entries, one point for all."""
    text = (
        '[[run]]\nname = "pt"\nmethod = "pt"\ngrid = { lr = [0.1, 0.01, 0.001] }\n'
        'grid_group = "shared"\n'
        '[[run]]\nname = "idpg"\nmethod = "idpg"\ngrid = { lr = [0.1, 0.01, 0.001] }\n'
        'grid_group = "shared"\n'
        '[[run]]\nname = "alone"\nmethod = "pt"\ngrid = { lr = [0.1, 0.01, 0.001] }\n'
    )
    suite = load_suite(write_suite(tmp_path, text))
    root = tmp_path / "results"
    grid = {(r.config, r.point): r for r in suite.runs if r.selects}
    final = {r.config: r for r in suite.runs if not r.selects}
    scores = {"pt": [0.9, 0.6, 0.5], "idpg": [0.1, 0.7, 0.6], "alone": [0.5, 0.7, 0.7]}
    for config, values in scores.items():
        for point, value in enumerate(values[:2]):
            finish(root, grid[(config, point)], value, test=1.0 - value)
    assert grid_choice(suite, final["alone"], root)["chosen"] is None  # a point is missing
    assert resolve(suite, final["alone"], root) is None
    # a group's choice lists each member's score: the count takes each grid run once
    write_summary(suite, root)
    assert "Grid runs: 6 of 9 finished." in (root / "summary.md").read_text()
    for config, values in scores.items():
        finish(root, grid[(config, 2)], values[2], test=1.0)
    alone = grid_choice(suite, final["alone"], root)
    assert alone["chosen"] == 1  # 0.7 twice: the first
    assert [p["mean"] for p in alone["points"]] == [0.5, 0.7, 0.7]
    shared = grid_choice(suite, final["pt"], root)
    assert shared == grid_choice(suite, final["idpg"], root)
    # means 0.5, 0.65, 0.55: the second point, although pt alone prefers the first
    assert [p["mean"] for p in shared["points"]] == pytest.approx([0.5, 0.65, 0.55])
    assert shared["chosen"] == 1 and shared["points"][0]["validation"] == {"pt": 0.9, "idpg": 0.1}
    resolved = resolve(suite, final["pt"], root)
    assert resolved is not None and resolved.training["lr"] == 0.01
    assert "evaluate_test" not in resolved.training


def test_grid_suite_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    defaults = (
        f"seeds = [0]\nsteps = 4\nbatch_size = 4\neval_every = 2\neval_batch_size = 16\n"
        f'checkpoint_every = 2\ntasks = ["{TOPICS}"]\n'
    )
    text = (
        '[[run]]\nname = "pt-n8"\nmethod = "pt"\noptions = { num_tokens = 8 }\n'
        "grid = { lr = [0.3, 0.03, 0.003] }\n"
    )
    path = write_suite(tmp_path, text, defaults)
    results = tmp_path / "results"
    command = ["bench", "--suite", str(path), "--results-dir", str(results)]
    assert main(command) == 0
    root = results / "g" / "topics" / "pt-n8"
    labels = ["lr=0.3", "lr=0.03", "lr=0.003"]
    validation = {}
    for label in labels:
        out = root / "grid" / label / "seed0"
        res = json.loads((out / "results.json").read_text())
        assert res["test"] is None and res["zero_shot_test"] is None
        assert res["task"]["test_used"] == 0 and res["training"]["evaluate_test"] is False
        assert res["training"]["lr"] == float(label.removeprefix("lr="))
        validation[label] = res["best_validation"]["value"]
        assert json.loads((out / "run.json").read_text())["grid_point"] == label
    best = max(labels, key=lambda label: validation[label])  # the first on a tie
    assert best == next(label for label in labels if validation[label] == max(validation.values()))
    res = json.loads((root / "seed0" / "results.json").read_text())  # the tested seed
    assert res["training"]["lr"] == float(best.removeprefix("lr="))
    assert res["training"]["evaluate_test"] is True and res["test"] is not None
    err = capsys.readouterr().err
    assert f"the grid chose lr = {float(best.removeprefix('lr='))!r}" in err
    # the tested seed 0 is the chosen grid run, tested: its checkpoint was resumed, not retrained
    chosen = root / "grid" / best / "seed0"
    assert f"trained as topics/pt-n8/grid/{best}/seed0: its checkpoint is tested" in err
    record = json.loads((root / "seed0" / "run.json").read_text())
    grid_record = json.loads((chosen / "run.json").read_text())
    assert record["trained_as"] == grid_record["id"] == f"topics/pt-n8/grid/{best}/seed0"
    assert record["prompt_sha256"] == grid_record["prompt_sha256"]
    assert res["train_loss"] == json.loads((chosen / "results.json").read_text())["train_loss"]
    assert record["wall_seconds"] > grid_record["wall_seconds"]
    # without the grid's checkpoint (a fresh clone) it trains from the start: the same bits
    (chosen / "checkpoint.pt").unlink()
    shutil.rmtree(root / "seed0")
    assert main(command) == 0
    assert "topics/pt-n8/seed0: training (pt)" in capsys.readouterr().err
    again = json.loads((root / "seed0" / "run.json").read_text())
    assert "trained_as" not in again
    assert again["prompt_sha256"] == record["prompt_sha256"] and again["test"] == record["test"]
    rows = json.loads((results / "g" / "summary.json").read_text())
    assert [(r["config"], r["n_seeds"]) for r in rows] == [("pt-n8", 1)]
    grid = rows[0]["grid"]
    assert [p["label"] for p in grid["points"]] == labels
    assert [p["validation"]["pt-n8"] for p in grid["points"]] == [validation[x] for x in labels]
    assert labels[grid["chosen"]] == best
    summary = (results / "g" / "summary.md").read_text()
    assert "1 of 1 runs finished" in summary and "Grid runs: 3 of 3 finished." in summary
    line = f"| topics | pt-n8 | pt-n8 | 0 | `{best}` | {validation[best]:.3f} | "
    assert f"{line}{validation[best]:.3f} | **chosen** |" in summary

    def no_training(*args: Any) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner, "run_child", no_training)
    assert main(command) == 0
    assert capsys.readouterr().err.count("finished before, skipped") == 4
    assert main([*command, "--list"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("finished: validation accuracy") == 3
    assert listing.endswith("4 of 4 runs finished\n")
