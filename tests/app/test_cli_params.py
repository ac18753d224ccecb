"""``lrpt params``: counts, JSON shape, rejected flags, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lrpt.app.cli import main


def _json(capsys, *argv: str) -> dict:
    assert main(["params", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_pt_paper_number(capsys) -> None:
    info = _json(capsys, "--method", "pt", "--embed-dim", "768", "--num-tokens", "100")
    assert info["method"] == "pt"
    assert info["trainable_params"] == 76800
    assert info["tensors"] == {"prompt_embeddings": [100, 768]}


def test_model_key_reads_embed_dim(capsys) -> None:
    info = _json(capsys, "--method", "pt", "--model", "tiny-llama", "--num-tokens", "10")
    assert info["trainable_params"] == 640


def test_text_output_has_breakdown(capsys) -> None:
    assert main(["params", "--method", "pt", "--embed-dim", "8", "--num-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "prompt_embeddings" in out and "3×8" in out and "trainable parameters: 24" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "pt", "--embed-dim", "768", "--num-tokens", "0"],
         "num_tokens must be an integer ≥ 1, got 0"),
        (["--method", "pt", "--embed-dim", "0"], "embed_dim must be ≥ 1, got 0"),
        (["--method", "pt", "--model", "nope"], "unknown model 'nope'"),
        (["--method", "pt", "--embed-dim", "8", "--encoder-dim", "4"],
         "uses no input encoder: drop --encoder-dim"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(capsys, argv: list[str], message: str) -> None:
    assert main(["params", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_unused_flag_is_rejected(capsys) -> None:
    from lrpt.app.method_options import option_types

    unused = sorted(set(option_types()) - {"num_tokens", "init", "init_text"})
    if not unused:
        pytest.skip("no other method registered")
    flag = "--" + unused[0].replace("_", "-")
    value = {"bool": "true", "str": "x", "int": "3", "float": "0.5"}[option_types()[unused[0]]]
    assert main(["params", "--method", "pt", "--embed-dim", "8", flag, value]) == 2
    assert f"method 'pt' does not use {flag}" in capsys.readouterr().err


def test_console_script_exit_code() -> None:
    cmd = [sys.executable, "-m", "lrpt.app.cli", "params", "--method", "bogus", "--embed-dim", "8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("lrpt: error: argument --method: invalid choice: 'bogus'")
    assert proc.stderr.count("\n") == 1
