"""The speed benchmark runs end to end on the tiny model (its timings are not asserted)."""

from __future__ import annotations

from pathlib import Path

from lrpt.app.bench.speed import Variant, markdown, ratios, run_speed
from lrpt.app.bench.speed_options import SpeedOptions

FIXTURE = str(Path(__file__).parents[1] / "fixtures" / "topics.jsonl")


def test_speed_report_is_complete() -> None:
    options = SpeedOptions("tiny-llama", FIXTURE, num_tokens=6, batch_size=4, rounds=2,
                           methods=("ulpt",), device="cpu", dtype="float32")  # fmt: skip
    report = run_speed(options, progress=lambda _: None)
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
    paths = {row["name"]: row["path"] for row in report["training"] + report["inference"]}
    shared = "shared prefix: [BOS] + prompt runs once per batch (training) or once per task"
    assert paths["pt"].startswith(shared) and paths["ulpt"].startswith(shared)
    assert paths["pt (naive)"] == "every row (no shared prefix: turned off (share_prefix=False))"
    assert paths["peft pt"] == "PEFT: with every row"
    assert paths["lrpt pt (cached prefix)"].startswith(shared)
    assert all("refused" not in r for r in report["training_vs_pt"].values())


def test_both_paths(tmp_path: Path, capsys) -> None:
    """--naive: each static method also without the shared prefix, against pt without it; the
    same loss on both paths, and both ratios side by side in the report."""
    from lrpt.app.cli import main

    out = tmp_path / "speed.json"
    argv = ["bench", "--speed", "--model", "tiny-llama", "--task", FIXTURE, "--num-tokens", "6",
            "--batch-size", "4", "--rounds", "2", "--methods", "ept,lopa", "--naive",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    import json

    report = json.loads(out.read_text())
    names = [row["name"] for row in report["training"]]
    assert names == ["pt", "pt (naive)", "peft pt", "ept", "ept (naive)", "lopa"]  # lopa: no prefix
    rows = {row["name"]: row for row in report["training"]}
    assert abs(rows["ept"]["loss_first"] - rows["ept (naive)"]["loss_first"]) < 1e-5
    assert rows["ept (naive)"]["path"].startswith("every row")
    assert set(report["both_paths"]) == {"ept"}
    pair = report["both_paths"]["ept"]
    assert pair["shared_vs_pt"] == report["training_vs_pt"]["ept"]
    naive = [a / b for a, b in zip(rows["ept (naive)"]["times_s"], rows["pt (naive)"]["times_s"],
                                   strict=True)]  # fmt: skip
    assert pair["naive_vs_pt_naive"]["max"] == max(naive)
    assert "| step time vs pt, both paths (min / median / max) |" in table
    assert "| ept | " in table.split("both paths")[1]


def test_no_ratio_for_a_shared_variant_that_did_not_share() -> None:
    base = Variant("pt", lambda: None, "shared prefix", times=[1.0, 2.0])
    naive = Variant("pt (naive)", lambda: None, "every row", times=[2.0, 2.0])
    assert ratios(naive, base) == {"min": 1.0, "median": 1.5, "max": 2.0}
    broken = Variant("pt", lambda: None, "every row", "sliding window", times=[1.0, 2.0])
    refused = {"refused": "'pt' did not share its prefix: sliding window"}
    assert ratios(naive, broken) == refused
    assert ratios(broken, naive) == refused
    report = {
        "model": "m", "task": "t", "num_tokens": 4, "batch_size": 2, "rounds": 2,
        "tokens_per_row_mean": 3.0, "torch_threads": 1, "machine": "x", "date": "d",
        "training": [{"name": "pt", "path": "every row", "median_s": 1.5, "times_s": [1, 2]}],
        "training_vs_pt": {"pt": refused}, "training_vs_peft": {"pt": refused},
        "inference": [], "inference_throughput_vs_peft": {}, "mixed_vs_single_throughput": refused,
    }  # fmt: skip
    table = markdown(report)
    assert "| pt | every row | 1.5 | nan | not reported: 'pt' did not share" in table
    assert "| training step time, lrpt pt / PEFT | not reported: 'pt' did not share" in table


def test_speed_flags_are_the_options_fields() -> None:
    """Each flag sets its SpeedOptions field; a flag not given leaves the field's default; pt,
    the baseline, is timed first when --methods leaves it out."""
    from lrpt.app.cli import build_parser
    from lrpt.app.cli.bench import given_speed_options

    argv = ["bench", "--speed", "--num-tokens", "7", "--methods", "ulpt,ept", "--naive",
            "--against-dtype", "float32", "--out", "r.json"]  # fmt: skip
    options = SpeedOptions(**given_speed_options(build_parser().parse_args(argv)))
    assert options == SpeedOptions(num_tokens=7, methods=("ulpt", "ept"), naive=True,
                                   against_dtype="float32", out=Path("r.json"))  # fmt: skip
    assert options.timed == ["pt", "ulpt", "ept"]
    assert SpeedOptions(methods=("ulpt", "pt")).timed == ["ulpt", "pt"]
    assert given_speed_options(build_parser().parse_args(["bench", "--speed"])) == {}


def test_speed_flags_are_checked_before_anything_loads(capsys) -> None:
    from lrpt.app.cli import main

    assert main(["bench", "--speed", "--methods", "pt,nope"]) == 2
    assert "--methods: unknown method(s) ['nope']" in capsys.readouterr().err
    assert main(["bench", "--speed", "--rounds", "0"]) == 2
    assert "--rounds must be ≥ 1, got 0" in capsys.readouterr().err


def test_speed_report_in_bf16(capsys, tmp_path) -> None:
    """``--dtype bfloat16``: lrpt and PEFT on one bf16 copy of the model, prompts in float32."""
    from lrpt.app.cli import main

    out = tmp_path / "speed.json"
    argv = ["bench", "--speed", "--model", "tiny-llama", "--task", FIXTURE, "--num-tokens", "6",
            "--batch-size", "4", "--rounds", "1", "--methods", "pt", "--dtype", "bfloat16",
            "--device", "cpu", "--against-dtype", "float32", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "Frozen model on cpu in bfloat16; prompts float32. Peak MB: process peak RSS" in table
    assert "| bfloat16 vs float32, same rounds |" in table
    import json

    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["dtype"] == "bfloat16"
    losses = {row["name"]: row["loss_first"] for row in report["training"]}
    # the shared prefix and the naive path agree in bf16 too (a float32 loss of bf16 logits;
    # tolerance as in tests/test_prefix.py: relative 1e-3, a quarter of bf16's unit roundoff)
    assert abs(losses["pt"] - losses["pt (naive)"]) <= 1e-3 * losses["pt (naive)"]
    import lrpt
    from lrpt.app.bench.speed import task_texts, train_batch, training_variants

    base = lrpt.load_model("tiny-llama")  # the float32 reference, in this process
    batch = train_batch(base.tokenizer, *task_texts(FIXTURE, 4)[:2])
    reference = {v.name: v.run() for v in training_variants(base, batch, 6, ["pt"])}
    # bf16 against float32: the same prompt and batch, within bf16 rounding (relative 1e-2)
    for name in ("pt", "peft pt"):
        assert abs(losses[name] - reference[name]) <= 1e-2 * reference[name], name
    assert losses["peft pt"] != reference["peft pt"]  # PEFT really ran in bf16
    # --against-dtype float32: pt and PEFT on a float32 copy, timed in the same rounds
    assert report["against_dtype"] == "float32"
    assert set(report["training_dtype_ratio"]) == {"pt", "pt (naive)", "peft pt"}
    against = {row["name"]: row for row in report["training_against_dtype"]}
    for name in ("pt", "peft pt"):
        row = against[f"{name} [float32]"]
        assert len(row["times_s"]) == 1 and row["path"] == next(
            r["path"] for r in report["training"] if r["name"] == name
        )
        assert abs(row["loss_first"] - losses[name]) <= 1e-2 * row["loss_first"]
        assert row["loss_first"] != losses[name]
