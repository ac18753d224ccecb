"""Local model directories as users have them: converted checkpoints without ``architectures``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny

import lrpt
from lrpt.app.cli import main

DATA = str(Path(__file__).parent / "fixtures" / "topics.jsonl")


def _converted(tmp_path: Path, family: str) -> Path:
    """The tiny model of ``family`` saved as a HF directory whose config has no architectures."""
    loaded = tiny(family)
    path = tmp_path / f"converted-{family}"
    loaded.model.save_pretrained(path)
    loaded.tokenizer.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    assert config.pop("architectures")
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("family", ["causal", "seq2seq", "encoder"])
def test_family_comes_from_model_type(tmp_path: Path, family: str) -> None:
    path = _converted(tmp_path, family)
    loaded = lrpt.load_model(path)
    assert loaded.family == family
    original = tiny(family).model.get_input_embeddings().weight
    assert torch.equal(loaded.model.get_input_embeddings().weight, original)


def test_converted_causal_model_trains_and_predicts(tmp_path: Path, capsys) -> None:
    path = _converted(tmp_path, "causal")
    out = tmp_path / "run"
    args = ["train", "--model", str(path), "--data", DATA, "--method", "pt", "--num-tokens", "4",
            "--steps", "2", "--batch-size", "4", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "prompt path: shared prefix ([BOS] + prompt once per batch)" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["family"] == "causal"
    assert results["prompt_path"] == {"shared_prefix": True, "reason": None}
    assert main(["predict", "--prompt", str(out / "prompt"), "--family", "causal", "hi"]) == 0
    capsys.readouterr()
    assert main(["predict", "--prompt", str(out / "prompt"), "--family", "encoder", "hi"]) == 2
    err = capsys.readouterr().err
    assert "--family encoder contradicts the artifact: the prompt was trained on a causal" in err


def test_family_flag_decides_for_the_user(tmp_path: Path, capsys) -> None:
    """A BERT directory reads as an encoder; ``--family`` can say otherwise, and it is used."""
    path = _converted(tmp_path, "encoder")
    assert lrpt.load_model(path, family="causal").family == "causal"
    assert type(lrpt.load_model(path, family="causal").model).__name__ == "BertLMHeadModel"


def test_unknown_family_names_what_was_tried(tmp_path: Path, capsys) -> None:
    path = tmp_path / "vision"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ValueError) as err:
        lrpt.load_model(path)
    assert str(err.value) == (
        "cannot tell the family of this model: its config has architectures [] and model_type "
        "'vit', which transformers maps to no causal-LM, seq2seq, masked-LM or "
        "sequence-classification class; pass family= (--family) one of causal, seq2seq, "
        "encoder, base"
    )
    args = ["train", "--model", str(path), "--data", DATA, "--method", "pt", "--out",
            str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 2
    assert "pass family= (--family)" in capsys.readouterr().err


def test_unreadable_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-type"}))
    with pytest.raises(ValueError, match=r"transformers cannot read its config\.json: "):
        lrpt.load_model(tmp_path)
