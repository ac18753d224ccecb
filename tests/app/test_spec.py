"""The run spec: one description of a run behind flags, TOML files, results.json and suites."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from lrpt.app.cli import main
from lrpt.app.spec import (
    DataSpec,
    MethodSpec,
    ModelSpec,
    RunSpec,
    read_spec_file,
    sections_from_settings,
    setting_names,
)
from lrpt.app.train_config import TrainConfig

DATA = str(Path(__file__).parents[1] / "fixtures" / "topics.jsonl")
TOML = f"""
[model]
name = "tiny-llama"
[method]
key = "ulpt"
num_tokens = 4
rank = 2
[data]
data = "{DATA}"
[format]
max_input_tokens = 64
[training]
steps = 3
batch_size = 4
eval_every = 3
max_test_examples = 8
seed = 3
"""


def _prompt(out: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(out / "prompt" / "prompt.safetensors")


def test_spec_round_trips_through_its_dict() -> None:
    spec = RunSpec(
        ModelSpec("tiny-llama"), MethodSpec("ulpt", {"num_tokens": 4}), DataSpec(task="mr"),
        training=TrainConfig(steps=5, lr=0.03), out="runs/x",
    )  # fmt: skip
    data = spec.to_dict()
    assert data["method"] == {"key": "ulpt", "num_tokens": 4}
    assert data["training"]["lr"] == 0.03 and data["training"]["weight_decay"] is None
    assert RunSpec.from_dict(json.loads(json.dumps(data))) == spec
    assert spec.with_overrides({"method": {"rank": 3}}).method.options == {
        "num_tokens": 4,
        "rank": 3,
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": {"name": "m"}}, r"no \[method\] section"),
        ({"model": {"name": "m"}, "method": {"key": "pt"}, "data": {"task": "mr"}, "x": {}},
         r"unknown section\(s\) x"),
        ({"model": {"name": "m"}, "method": {"key": "pt"}, "data": {"task": "mr", "lr": 1}},
         r"\[data\] has unknown key\(s\) lr"),
        ({"model": {"name": "m"}, "method": {"key": "pt", "rank": 2}, "data": {"task": "mr"}},
         "rank"),
        ({"model": {"name": "m"}, "method": {"key": "pt"}, "data": {}},
         r"no data: give a task or a data file \(--task or --data\)"),
        ({"model": {"name": "m"}, "method": {"key": "pt"}, "data": {"task": "mr"},
          "training": {"steps": 0}}, "steps must be an integer ≥ 1, got 0"),
        ({"model": {"name": "m"}, "method": {"key": "nope"}, "data": {"task": "mr"}},
         "unknown method 'nope'"),
    ],
)  # fmt: skip
def test_bad_specs_name_what_is_wrong(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunSpec.from_dict(data)


def test_every_training_option_is_a_setting_and_a_flag() -> None:
    """Written once: each TrainConfig field is a setting name and an ``lrpt train`` flag."""
    from lrpt.app.cli import build_parser

    names = setting_names()
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert all(names[f] == ("training", f) for f in fields)
    train = build_parser()._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    flags = {s for action in train._actions for s in action.option_strings}
    assert {"--" + f.replace("_", "-") for f in fields} <= flags
    assert sections_from_settings({"max_test_examples": 0, "model": "m"}) == {
        "training": {"max_test_examples": None},
        "model": {"name": "m"},
    }


def test_toml_config_flags_override_and_results_rerun(tmp_path: Path, capsys) -> None:
    config = tmp_path / "run.toml"
    config.write_text(TOML)
    first = tmp_path / "first"
    assert main(["train", "--config", str(config), "--out", str(first), "--quiet"]) == 0
    results = json.loads((first / "results.json").read_text())
    spec = results["spec"]
    assert spec["method"] == {"key": "ulpt", "num_tokens": 4, "rank": 2}
    assert spec["training"]["seed"] == 3 and spec["training"]["lr"] is None  # method default
    assert results["training"]["lr"] == 0.03  # ulpt's default learning rate, resolved
    assert spec["out"] == str(first)

    # flags override the file: another seed and rank
    second = tmp_path / "second"
    argv = ["train", "--config", str(config), "--out", str(second), "--seed", "4", "--rank", "3",
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    spec2 = json.loads((second / "results.json").read_text())["spec"]
    assert spec2["training"]["seed"] == 4 and spec2["method"]["rank"] == 3

    # results.json reruns the run: the same prompt, bit for bit
    again = tmp_path / "again"
    assert main(["train", "--config", str(first / "results.json"), "--out", str(again),
                 "--quiet"]) == 0  # fmt: skip
    a, b = _prompt(first), _prompt(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rerun = json.loads((again / "results.json").read_text())
    assert rerun["train_loss"] == results["train_loss"] and rerun["test"] == results["test"]
    capsys.readouterr()

    # the same run from flags alone gives the same spec
    flags = tmp_path / "flags"
    argv = ["train", "--model", "tiny-llama", "--method", "ulpt", "--num-tokens", "4", "--rank",
            "2", "--data", DATA, "--max-input-tokens", "64", "--steps", "3", "--batch-size", "4",
            "--eval-every", "3", "--max-test-examples", "8", "--seed", "3", "--out", str(flags),
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    from_flags = json.loads((flags / "results.json").read_text())["spec"]
    assert from_flags | {"out": None} == spec | {"out": None}


def test_config_errors_are_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nname = 'tiny-llama'\n[method]\nkey = 'pt'\nrank = 2\n")
    assert main(["train", "--config", str(bad), "--task", "mr", "--out", str(tmp_path / "o")]) == 2
    assert "method 'pt' does not use --rank" in capsys.readouterr().err
    assert main(["train", "--method", "pt", "--task", "mr", "--out", str(tmp_path / "o")]) == 2
    assert "--model is required" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "none.toml")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad.write_text("[model\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert f"--config {str(bad)!r}: " in capsys.readouterr().err


def test_read_spec_file_takes_results_json(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"spec": {"model": {"name": "m"}}, "test": {}}))
    assert read_spec_file(path) == {"model": {"name": "m"}}
    path.write_text(json.dumps({"method": "pt", "model": {"name": "m"}}))
    with pytest.raises(ValueError, match="from before run specs were recorded"):
        read_spec_file(path)
