"""``lrpt train / eval / predict / data`` end to end on tiny models, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

from lrpt.app.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


FIXTURES = Path(__file__).parent.parent / "fixtures"
TOPICS = str(FIXTURES / "topics.jsonl")


def train_args(out: Path, *extra: str) -> list[str]:
    return [
        "train", "--model", "tiny-llama", "--data", TOPICS, "--method", "pt",
        "--num-tokens", "4", "--steps", "6", "--batch-size", "4", "--eval-every", "3",
        "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


def test_train_eval_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(train_args(out, "--verbalizer", "politics=vote,science=lab,sports=goal")) == 0
    assert "test accuracy" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["task"]["verbalizer"] == {"politics": "vote", "science": "lab", "sports": "goal"}
    assert results["model"] == {"name": "tiny-llama", "family": "causal", "encoder": None}

    assert main(["eval", "--prompt", str(out / "prompt"), "--data", TOPICS, "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["metrics"] == results["test"]  # the same (whole) test split

    assert main(["predict", "--prompt", str(out / "prompt"), "Headline about sports", "x"]) == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 2 and set(lines) <= {"politics", "science", "sports"}


def test_train_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert main(train_args(out)) == 2
    assert "already exists: pass --resume" in capsys.readouterr().err
    assert main(train_args(tmp_path / "new", "--verbalizer", "politics=a")) == 2
    assert "missing: ['science', 'sports']" in capsys.readouterr().err
    assert main(train_args(tmp_path / "new", "--rank", "2")) == 2
    assert "does not use --rank" in capsys.readouterr().err
    assert main(train_args(tmp_path / "new", "--max-input-tokens", "4")) == 2
    assert "max_input_tokens must be an integer ≥ 8, got 4" in capsys.readouterr().err


def test_data_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["mr", "tweets", "bbc"]


def read_prompt(out: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(out / "prompt" / "prompt.safetensors")


def test_resume_after_sigkill_matches_uninterrupted(tmp_path: Path) -> None:
    """Kill a training subprocess with SIGKILL after its first checkpoint, resume, compare."""
    args = ["--steps", "40", "--checkpoint-every", "2", "--eval-every", "10"]
    killed = tmp_path / "killed"
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # as in this process (bit-identical sums)
    cmd = [sys.executable, "-m", "lrpt.app.cli", *train_args(killed, *args)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = killed / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    step = torch.load(checkpoint, weights_only=True)["state"]["step"]
    assert 0 < step < 40 and not (killed / "results.json").exists()

    assert main([*train_args(killed, *args), "--resume"]) == 0
    assert main(train_args(tmp_path / "full", *args)) == 0
    resumed = json.loads((killed / "results.json").read_text())
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    for key in ("test", "zero_shot_test", "best_validation", "validation_history", "train_loss"):
        assert resumed[key] == full[key], key
    a, b = read_prompt(killed), read_prompt(tmp_path / "full")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_local_model_directory_and_pair_data(tmp_path: Path, capsys) -> None:
    """A model saved as a plain HF directory, data with text pairs and a different metric."""
    from conftest import tiny

    local = tmp_path / "my-model"
    loaded = tiny("causal")
    loaded.model.save_pretrained(local)
    loaded.tokenizer.save_pretrained(local)
    out = tmp_path / "run"
    data = str(FIXTURES / "mrpc_like.csv")
    args = [
        "train", "--model", str(local), "--data", data, "--text-field", "sentence1",
        "--text-pair-field", "sentence2", "--metric", "f1", "--method", "pt", "--num-tokens", "4",
        "--steps", "2", "--batch-size", "4", "--out", str(out), "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["name"] == str(local.resolve())
    assert results["task"]["template"] == "Input 1: {text}\nInput 2: {text_pair}\nLabel:"
    assert results["best_validation"]["metric"] == "f1"
    capsys.readouterr()
    assert main(["predict", "--prompt", str(out / "prompt"), "one\tother", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["text"] == "one\tother" and line["prediction"] in results["task"]["labels"]
