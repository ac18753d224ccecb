"""``lrpt bench --suite``: suite files, the aggregation (pinned numbers) and the tiny suite end to
end (train, rerun skips finished runs, an unfinished run resumes, changed settings are refused)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lrpt.accounting import describe
from lrpt.app.bench.suite import Suite, SuiteRun, load_suite, runner
from lrpt.app.bench.suite.report import markdown, plot, summarize
from lrpt.app.bench.suite.runner import select_runs
from lrpt.app.cli import main
from lrpt.methods import METHODS

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "bench" / "suites"
ROW_KEYS = {
    "method", "task", "config", "n_seeds", "metric", "mean", "std", "trainable_params",
    "artifact_bytes", "sec_per_step", "peak_rss_mb",
}  # fmt: skip


def record(task: str, config: str, method: str, seed: int, test: float, **extra: Any) -> dict:
    return {
        "task": task, "config": config, "method": method, "seed": seed, "metric": "accuracy",
        "test": test, "zero_shot": 0.5, "trainable_params": 1352, "artifact_bytes": 6000 + seed,
        "sec_per_step": 2.0 + seed, "peak_rss_mb": 900.0 - seed, "model": "smollm2-135m",
    } | extra  # fmt: skip


# --- aggregation ---------------------------------------------------------------------------


def test_summarize_groups_by_task_config_method() -> None:
    records = [
        record("mr", "ulpt-n100-r2", "ulpt", 0, 0.5),
        record("mr", "pt-n3", "pt", 0, 0.625, trainable_params=1728),
        record("bbc", "ulpt-n100-r2", "ulpt", 0, 0.25),
        record("mr", "ulpt-n100-r2", "ulpt", 1, 0.75),
        record("bbc", "ulpt-n100-r2", "ulpt", 1, 0.5),
        record("mr", "ulpt-n100-r2", "ulpt", 2, 1.0),
    ]
    rows = summarize(records)
    assert [(r["task"], r["config"]) for r in rows] == [
        ("mr", "ulpt-n100-r2"), ("mr", "pt-n3"), ("bbc", "ulpt-n100-r2")
    ]  # fmt: skip
    assert all(set(r) >= ROW_KEYS for r in rows)
    mr_ulpt, mr_pt, bbc_ulpt = rows
    # mean of 0.5, 0.75, 1.0; sample std sqrt((0.25² + 0 + 0.25²) / 2) = 0.25, exactly
    assert (mr_ulpt["n_seeds"], mr_ulpt["mean"], mr_ulpt["std"]) == (3, 0.75, 0.25)
    assert mr_ulpt["seeds"] == [0, 1, 2] and mr_ulpt["values"] == [0.5, 0.75, 1.0]
    assert mr_ulpt["sec_per_step"] == 3.0  # mean of 2, 3, 4
    assert mr_ulpt["peak_rss_mb"] == 900.0  # the largest
    assert mr_ulpt["artifact_bytes"] == 6002  # the largest
    assert (mr_ulpt["trainable_params"], mr_ulpt["metric"], mr_ulpt["zero_shot"]) == (
        1352, "accuracy", 0.5
    )  # fmt: skip
    assert (mr_pt["n_seeds"], mr_pt["mean"], mr_pt["std"], mr_pt["trainable_params"]) == (
        1, 0.625, None, 1728
    )  # fmt: skip
    # 0.25 and 0.5: mean 0.375, sample std 0.25 / √2
    assert (bbc_ulpt["n_seeds"], bbc_ulpt["mean"]) == (2, 0.375)
    assert bbc_ulpt["std"] == pytest.approx(0.1767766952966369, abs=1e-15)
    assert summarize([]) == []


def test_summarize_missing_measurements() -> None:
    rows = summarize([record("mr", "a", "pt", 0, 0.5, peak_rss_mb=None, zero_shot=None)])
    assert rows[0]["peak_rss_mb"] is None and rows[0]["zero_shot"] is None


def test_markdown_and_plot(tmp_path: Path) -> None:
    records = [
        record("mr", "ulpt-n100-r2", "ulpt", 0, 0.5, finished="2026-01-02T10:00:00+00:00",
               machine={"cpu": "CPU X", "cpus": 2, "os": "Linux", "python": "3.11",
                        "torch": "2.13"}),
        record("mr", "ulpt-n100-r2", "ulpt", 1, 1.0, finished="2026-01-03T10:00:00+00:00",
               machine={"cpu": "CPU X", "cpus": 2, "os": "Linux", "python": "3.11",
                        "torch": "2.13"}),
    ]  # fmt: skip
    rows = summarize(records)
    suite = Suite("demo", "a demo", [SuiteRun("ulpt-n100-r2", "ulpt", "mr", s) for s in range(3)])
    text = markdown(suite, rows, records)
    assert "2 of 3 runs finished (2026-01-02 to 2026-01-03)" in text
    assert "Machine: CPU X, 2 CPUs, Linux, Python 3.11, torch 2.13." in text
    assert (
        "| mr | ulpt-n100-r2 | `ulpt` | 2 | accuracy 0.750 ± 0.354 | 0.500 | 1,352 | 5.9 KiB "
        "| 2.50 | 900 MB |" in text
    )
    if importlib.util.find_spec("matplotlib") is None:
        assert not plot(rows, tmp_path / "p.png", title="t")
    else:
        assert plot(rows, tmp_path / "p.png", title="t")
        assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


# --- suite files ---------------------------------------------------------------------------


def write_suite(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text('[defaults]\nmodel = "tiny-llama"\ntasks = ["mr"]\n' + text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no \\[\\[run\\]\\] entries"),
        ('[[run]]\nname = "a"\nmethod = "pt"\n[[run]]\nname = "a"\nmethod = "pt"\n', "twice"),
        ('[[run]]\nname = "a/b"\nmethod = "pt"\n', "name must be"),
        ('[[run]]\nname = "a"\nmethod = "pt"\nnum_tokens = 4\n', "put num_tokens under options"),
        ('[[run]]\nname = "a"\nmethod = "pt"\noptions = {rank = 2}\n', "does not use --rank"),
        ('[[run]]\nname = "a"\nmethod = "pt"\nout = "x"\n', "set by the suite runner"),
        ('[[run]]\nname = "a"\nmethod = "pt"\noptions = {seed = 1}\n', "not method options"),
        ('[[run]]\nname = "a"\nmethod = "pt"\nsteps = 0\n', "steps must be an integer ≥ 1"),
        ('[[run]]\nname = "a"\nmethod = "pt"\nmax_input_tokens = 4\n', "must be an integer ≥ 8"),
        ('[[run]]\nname = "a"\nmethod = "pt"\nstpes = 5\n', "unknown setting 'stpes'"),
        ('[[run]]\nname = "a"\nmethod = "nope"\n', "unknown method 'nope'"),
        ('[[run]]\nname = "a"\nmethod = "pt"\nseeds = [0.5]\n', "seeds must be a list"),
        ('[[run]]\nname = "a"\nmethod = "pt"\nstage = -1\n', "stage must be an integer ≥ 0"),
        ('[[run]]\nname = "a"\nmethod = "pt"\ntasks = ["no/such.csv"]\n', "neither a built-in"),
    ],
)
def test_load_suite_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_suite(write_suite(tmp_path, text))


def test_load_suite_unknown_table(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[default]\nsteps = 5\n[[run]]\nname = "a"\nmethod = "pt"\n')
    with pytest.raises(ValueError, match="unknown key\\(s\\) default"):
        load_suite(path)


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ('seeds = [0, 1]\n[[run]]\nname = "late"\nmethod = "pt"\nstage = 1\n'
         '[[run]]\nname = "early"\nmethod = "pt"\n[[run]]\nname = "also"\nmethod = "pt"\n',
         ["mr/early/seed0", "mr/also/seed0", "mr/early/seed1", "mr/also/seed1", "mr/late/seed0",
          "mr/late/seed1"]),
        # a grid's runs first in its stage; grid_from (a later stage) runs no grid of its own
        ('[[run]]\nname = "short"\nmethod = "pt"\ngrid = { lr = [0.1, 0.01] }\n'
         '[[run]]\nname = "long"\nmethod = "pt"\ngrid_from = "short"\nstage = 1\n',
         ["mr/short/grid/lr=0.1/seed0", "mr/short/grid/lr=0.01/seed0", "mr/short/seed0",
          "mr/long/seed0"]),
    ],
)  # fmt: skip
def test_runs_in_order_of_stage_then_seed(tmp_path: Path, text: str, ids: list[str]) -> None:
    suite = load_suite(write_suite(tmp_path, text))
    assert [run.id for run in suite.runs] == ids
    assert all(r.training == {"model": "tiny-llama"} for r in suite.runs if not r.selects)


def test_quick_suite() -> None:
    suite = load_suite(SUITES / "quick.toml")
    assert [run.method for run in suite.runs] == list(METHODS)  # every method once
    assert {(run.task, run.seed) for run in suite.runs} == {("mr", 0)}
    assert {run.training["model"] for run in suite.runs} == {"smollm2-135m"}


def test_paper_suite() -> None:
    suite = load_suite(SUITES / "paper.toml")
    configs = {run.config: run for run in suite.runs}
    assert len(configs) == 19 and len(suite.runs) == 10 * 2 * 3 + 9 * 1 * 3
    core = suite.runs[:60]  # stage 0: the ten methods on both tasks, every seed
    assert [run.method for run in core[:10]] == list(METHODS)
    assert {(run.method, run.task, run.seed) for run in core} == {
        (method, task, seed) for method in METHODS for task in ("mr", "bbc") for seed in (0, 1, 2)
    }
    assert [run.seed for run in core] == [0] * 20 + [1] * 20 + [2] * 20  # seed-major
    assert {run.task for run in suite.runs[60:]} == {"mr"}  # stage 1: the comparisons, on mr
    assert [run.seed for run in suite.runs[60:]] == [0] * 9 + [1] * 9 + [2] * 9
    assert all("stage" not in run.training for run in suite.runs)

    def params(config: str) -> int:
        run = configs[config]
        encoder = 384 if run.method in ("lopa", "idpg") else None
        return describe(run.method, 576, encoder, **run.options)["trainable_params"]

    # ULPT at equal parameter count: 100·2 + 2·576 = 1,352 against pt n = 3 (1,728 ≥ 1,352)
    assert (params("ulpt-n100-r2"), params("pt-n3")) == (1352, 1728)
    # EPT / DePT at the decomposition budget of pt n = 100; EPT's experts come on top
    budget = params("pt-n100")
    assert params("dept-s61-r27") == params("ept-s61-r27-nomulti") == budget == 57_600
    assert params("ept-s61-r27") == params("ept-s61-r27-nodecomp") == 136_000
    # the same n: pt / dpt / lopt / ulpt at 100, pt / lopt at 20, pt / lopa / idpg at 10
    for n, group in [(100, ["pt-n100", "dpt-n100-b10", "lopt1-n100-r5", "lopt2-n100-r5",
                            "ulpt-n100-r2"]),
                     (20, ["pt-n20", "lopt1-n20-r5", "lopt2-n20-r5"]),
                     (10, ["pt-n10", "lopa-n10-r4", "idpg-n10"])]:  # fmt: skip
        assert {configs[c].options["num_tokens"] for c in group} == {n}
    assert configs["ulpt-n100-r2-noshift"].options["shift"] is False
    assert configs["ulpt-n100-r2-noscale"].options["scale"] is False


def test_fair_suite() -> None:
    """The ten methods (and pt n = 10) on mr and bbc, each with a learning-rate grid on seed 0,
    then seeds 0-2; stage 1 on mr at 1,000 steps at the rates chosen at 150."""
    suite = load_suite(SUITES / "fair.toml")
    grids = [run for run in suite.runs if run.selects]
    tested = [run for run in suite.runs if not run.selects]
    stage0 = {run.config: run for run in tested if "stage" not in run.training}
    assert [run.method for run in tested[:11]] == [*METHODS, "pt"]
    assert len(tested) == 11 * 2 * 3 + 7 * 3 and {run.seed for run in grids} == {0}
    assert all(run.training["evaluate_test"] is False for run in grids)
    assert all("evaluate_test" not in run.training for run in tested)
    assert all(run.grid is not None for run in tested)  # every rate is chosen
    # ULPT's and DPT's grids hold the evidence's rates; EPT and DePT tune both rates
    points = {c: [p.get("lr") for p in r.grid.points] for c, r in stage0.items() if r.grid}
    assert points["ulpt-n100-r2"] == [0.1, 0.03, 0.01] and 0.3 in points["dpt-n100-b10"]
    ept = stage0["ept-s61-r27"].grid
    assert ept is not None and {p["lowrank_lr"] for p in ept.points} == {5e-4, 5e-3}
    assert {stage0[c].grid.group for c in ("lopa-n10-r4", "idpg-n10", "pt-n10")} == {"lopa"}
    assert stage0["idpg-n10"].options == {"num_tokens": 10, "hidden": 256}  # the new defaults
    long = [run for run in tested if run.config.endswith("-1k")]
    assert {run.method for run in long} == {"pt", "ulpt", "dpt", "lopt1", "dept", "ept"}
    assert all(run.task == "mr" and run.training["steps"] == 1000 for run in long)
    assert all(run.grid is not None and not run.grid.own for run in long)
    assert sum(run.config.endswith("-1k") for run in grids) == 0  # they take stage 0's choice


def test_only_selects_runs_by_id_pattern_in_the_suites_order(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    suite = load_suite(SUITES / "fair.toml")
    chosen = select_runs(suite, ["mr/ept-s61-r27/*", "mr/ulpt-n100-r2/*"])
    assert [r.id for r in chosen] == [
        "mr/ulpt-n100-r2/grid/lr=0.1/seed0", "mr/ulpt-n100-r2/grid/lr=0.03/seed0",
        "mr/ulpt-n100-r2/grid/lr=0.01/seed0",
        *(f"mr/ept-s61-r27/grid/lr={lr},lowrank_lr={low}/seed0"
          for lr in (0.3, 0.03, 0.01) for low in (0.0005, 0.005)),
        *(f"mr/{c}/seed{s}" for s in (0, 1, 2) for c in ("ulpt-n100-r2", "ept-s61-r27")),
    ]  # fmt: skip
    assert select_runs(suite, []) == suite.runs
    argv = ["bench", "--suite", "fair", "--results-dir", str(tmp_path), "--list"]
    assert main([*argv, "--only", "bbc/pt-n10/*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 7 and out[-1] == "0 of 6 runs finished"
    assert main([*argv, "--only", "mr/nope*"]) == 2
    assert "--only 'mr/nope*' matches no run of suite 'fair'" in capsys.readouterr().err
    assert main(["bench", "--speed", "--only", "x"]) == 2
    assert "--only goes with --suite" in capsys.readouterr().err


def test_suite_not_found(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["bench", "--suite", "nope"]) == 2
    assert "suites in bench/suites: bf16, fair, paper, quick, tiny" in capsys.readouterr().err
    assert main(["bench", "--speed", "--list"]) == 2
    assert "--list goes with --suite" in capsys.readouterr().err
    assert main(["bench", "--suite", "tiny", "--batch-size", "8", "--model", "m"]) == 2
    assert "--model, --batch-size: --speed options" in capsys.readouterr().err


# --- the tiny suite, end to end ------------------------------------------------------------


def test_tiny_suite_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)  # the suite's data file is relative to the repository root
    results = tmp_path / "results"
    command = ["bench", "--suite", "tiny", "--results-dir", str(results)]
    assert main(command) == 0
    root = results / "tiny"
    ids = ["topics/pt-n8/seed0", "topics/ulpt-n8-r2/seed0"]
    for run_id in ids:
        run_dir = root / run_id
        for name in ("run.json", "results.json", "checkpoint.pt", "prompt/prompt.json"):
            assert (run_dir / name).is_file(), name
        rec = json.loads((run_dir / "run.json").read_text())
        assert rec["id"] == run_id and rec["steps"] == 4 and rec["peak_rss_mb"] > 0
        sizes = sum(p.stat().st_size for p in (run_dir / "prompt").iterdir())
        assert rec["artifact_bytes"] == sizes
        tensors = (run_dir / "prompt" / "prompt.safetensors").read_bytes()
        assert rec["prompt_sha256"] == hashlib.sha256(tensors).hexdigest()
    shas = [json.loads((root / i / "run.json").read_text())["prompt_sha256"] for i in ids]
    # a fresh run of the same id elsewhere gives the same tensors, bit for bit
    again = tmp_path / "again"
    assert main(["bench", "--suite", "tiny", "--results-dir", str(again), "--only", ids[0]]) == 0
    rerun = json.loads((again / "tiny" / ids[0] / "run.json").read_text())
    assert rerun["prompt_sha256"] == shas[0]
    rows = json.loads((root / "summary.json").read_text())
    assert [(r["config"], r["method"], r["n_seeds"]) for r in rows] == [
        ("pt-n8", "pt", 1), ("ulpt-n8-r2", "ulpt", 1)
    ]  # fmt: skip
    assert [r["trainable_params"] for r in rows] == [8 * 64, 8 * 2 + 2 * 64]
    summary_md = (root / "summary.md").read_text()
    assert "| topics | ulpt-n8-r2 | `ulpt` | 1 |" in summary_md
    assert (  # the suite's claim: 8·2 + 2·64 = 144 of pt's 8·64 = 512 parameters
        "| ulpt needs ≤ 30 % of pt's parameters | topics | ulpt-n8-r2 | pt-n8 | trainable_params "
        "| 144 | 512 | 0.281 (need ≤ 0.3) | holds |"
    ) in summary_md
    assert (root / "summary.png").is_file() == (importlib.util.find_spec("matplotlib") is not None)
    capsys.readouterr()

    # a rerun trains nothing
    def no_training(*args: Any) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner, "run_child", no_training)
    assert main(command) == 0
    assert capsys.readouterr().err.count("finished before, skipped") == 2
    for name in ("summary.json", "summary.md"):
        (root / name).unlink()
    assert main([*command, "--summarize"]) == 0  # rewrites the summaries, trains nothing
    assert "2 summary rows" in capsys.readouterr().out
    assert (root / "summary.md").read_text() == summary_md

    # a run without run.json (killed before it finished) resumes from its checkpoint
    monkeypatch.undo()
    monkeypatch.chdir(ROOT)
    (root / ids[1] / "run.json").unlink()
    trained: list[str] = []
    real_child = runner.run_child

    def counting(command: list[str], log: Path) -> tuple[int, float | None]:
        trained.append(str(log.parent.relative_to(root)))
        return real_child(command, log)

    monkeypatch.setattr(runner, "run_child", counting)
    assert main(command) == 0
    assert trained == [ids[1]]
    assert len(json.loads((root / "summary.json").read_text())) == 2
    assert json.loads((root / ids[1] / "run.json").read_text())["prompt_sha256"] == shas[1]
    assert main([*command, "--list"]) == 0
    assert capsys.readouterr().out.count("finished: accuracy") == 2

    # the suite changed a finished run's settings: refused, nothing trained
    changed = tmp_path / "tiny.toml"
    shutil.copy(SUITES / "tiny.toml", changed)
    changed.write_text(changed.read_text().replace("steps = 4", "steps = 5"))
    assert main(["bench", "--suite", str(changed), "--results-dir", str(results)]) == 2
    assert "with other training than the suite now gives it" in capsys.readouterr().err
    assert trained == [ids[1]]


def test_failed_run_is_reported_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)

    def failing(command: list[str], log: Path) -> tuple[int, float | None]:
        log.write_text("lrpt: error: the training loss is nan at step 3: lower --lr\n")
        return 2, None

    monkeypatch.setattr(runner, "run_child", failing)
    assert main(["bench", "--suite", "tiny", "--results-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("FAILED (lrpt: error: the training loss is nan") == 2
    assert "failed (rerun to retry): topics/pt-n8/seed0, topics/ulpt-n8-r2/seed0" in captured.out
    assert not (tmp_path / "tiny" / "summary.json").exists()
    assert main(["bench", "--suite", "tiny", "--results-dir", str(tmp_path), "--list"]) == 0
    assert capsys.readouterr().out.endswith("0 of 2 runs finished\n")
