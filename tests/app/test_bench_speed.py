"""The speed benchmark runs end to end on the tiny model (its timings are not asserted)."""

from __future__ import annotations

from pathlib import Path

from lrpt.app.bench_speed import markdown, run_speed

FIXTURE = str(Path(__file__).parents[1] / "fixtures" / "topics.jsonl")


def test_speed_report_is_complete() -> None:
    report = run_speed("tiny-llama", FIXTURE, num_tokens=6, batch_size=4, rounds=2,
                       methods=["pt", "ulpt"], progress=lambda _: None)  # fmt: skip
    names = [row["name"] for row in report["training"]]
    assert names == ["pt", "pt (naive)", "peft pt", "ulpt"]
    losses = {row["name"]: row["loss_first"] for row in report["training"]}
    # the same prompt and batch: lrpt's shared prefix and its naive path give the same loss
    # (PEFT's differs slightly here: it puts the prompt before the tiny model's BOS)
    assert abs(losses["pt"] - losses["pt (naive)"]) < 1e-5
    assert all(len(row["times_s"]) == 2 and row["peak_mb"] >= 0 for row in report["training"])
    assert set(report["training_vs_peft"]) == {"pt", "pt (naive)"}
    ratio = report["mixed_vs_single_throughput"]
    assert ratio["min"] <= ratio["median"] <= ratio["max"]
    assert "| vs PEFT prompt tuning |" in markdown(report)


def test_speed_flags_are_checked_before_anything_loads(capsys) -> None:
    from lrpt.app.cli import main

    assert main(["bench", "--speed", "--methods", "pt,nope"]) == 2
    assert "--methods: unknown method(s) ['nope']" in capsys.readouterr().err
    assert main(["bench", "--speed", "--rounds", "0"]) == 2
    assert "--rounds must be ≥ 1, got 0" in capsys.readouterr().err
