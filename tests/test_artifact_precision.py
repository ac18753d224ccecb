"""Artifacts across precisions: float32 tensors whatever the base's dtype, and a prompt trained
on a bf16 copy of a model loads onto its float32 copy (and the other way where it can be told)."""

from __future__ import annotations

import logging

import pytest
import safetensors.torch
import torch
from conftest import tiny

import lrpt
from lrpt.artifact import FrozenStateMismatch, ModelMismatch
from lrpt.base_models import place

TEXTS = ["a quiet film", "loud and very long, but fun", "ok"]
CPU = torch.device("cpu")


def _bf16() -> lrpt.LoadedModel:
    return place(tiny("causal"), CPU, torch.bfloat16)


def _trained(loaded: lrpt.LoadedModel, key: str, **options) -> lrpt.PromptedModel:
    """A prompt after two SGD steps (so its tensors are not the initial ones)."""
    pm = lrpt.prompt_model(key, loaded.model, loaded.tokenizer, seed=0, **options)
    opt = torch.optim.SGD([p for p in pm.method.parameters() if p.requires_grad], lr=0.5)
    batch = loaded.tokenizer(TEXTS, return_tensors="pt", padding=True)
    for _ in range(2):
        opt.zero_grad()
        pm(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100))
        pm(**batch, labels=batch["input_ids"]).loss.backward()
        opt.step()
    return pm


def test_bf16_trained_prompt_is_float32_and_loads_into_a_float32_model(tmp_path) -> None:
    bf16 = _bf16()
    pm = _trained(bf16, "pt", num_tokens=4)
    path = lrpt.save_prompt(pm, tmp_path / "a", model_name="tiny-llama")
    meta = lrpt.read_artifact(path)
    assert meta["model"]["dtype"] == "bfloat16"  # recorded for a half-precision base only
    assert {spec["dtype"] for spec in meta["tensors"].values()} == {"float32"}
    stored = safetensors.torch.load_file(path / "prompt.safetensors")
    assert torch.equal(stored["method.prompt_embeddings"], pm.method.prompt_embeddings.detach())
    f32 = tiny("causal")
    loaded = lrpt.load_prompt(path, f32.model, f32.tokenizer)
    assert torch.equal(loaded.method.prompt_embeddings, pm.method.prompt_embeddings)
    batch = f32.tokenizer(TEXTS, return_tensors="pt", padding=True)
    diff = (loaded(**batch).logits - pm(**batch).logits.float()).abs().max().item()
    assert diff < 0.05  # the same prompt on the float32 copy: bf16 rounding apart


def test_frozen_state_from_embeddings_regenerates_across_precisions(tmp_path) -> None:
    """lopt2's frozen X0 is read from the embeddings: on the float32 copy it is rebuilt from
    them rounded to bf16, bit for bit the X0 the prompt was trained with."""
    pm = _trained(_bf16(), "lopt2", num_tokens=4, rank=2)
    path = lrpt.save_prompt(pm, tmp_path / "b", model_name="tiny-llama")
    f32 = tiny("causal")
    loaded = lrpt.load_prompt(path, f32.model, f32.tokenizer)
    assert torch.equal(loaded.method.X0, pm.method.X0)
    assert torch.equal(loaded.method.materialise(), pm.method.materialise())


def test_float32_frozen_state_cannot_be_rebuilt_on_a_bf16_copy(tmp_path) -> None:
    f32 = tiny("causal")
    path = lrpt.save_prompt(_trained(f32, "lopt2", num_tokens=4, rank=2), tmp_path / "c",
                            model_name="tiny-llama")  # fmt: skip
    bf16 = _bf16()
    with pytest.raises(FrozenStateMismatch, match=r"load the model in float32$"):
        lrpt.load_prompt(path, bf16.model, bf16.tokenizer)


def test_float32_prompt_on_a_bf16_copy_loads_with_a_warning(tmp_path, caplog) -> None:
    f32 = tiny("causal")
    pm = _trained(f32, "pt", num_tokens=4)
    path = lrpt.save_prompt(pm, tmp_path / "d", model_name="tiny-llama")
    bf16 = _bf16()
    with caplog.at_level(logging.WARNING, logger="lrpt.artifact.load"):
        loaded = lrpt.load_prompt(path, bf16.model, bf16.tokenizer)
    assert torch.equal(loaded.method.prompt_embeddings, pm.method.prompt_embeddings)
    assert "saved from a float32 copy of model 'tiny-llama' and this copy is bfloat16" in (
        caplog.text
    )


def test_other_embeddings_are_caught_at_the_stored_precision(tmp_path) -> None:
    path = lrpt.save_prompt(_trained(_bf16(), "pt", num_tokens=4), tmp_path / "e",
                            model_name="tiny-llama")  # fmt: skip
    other = tiny("causal")
    with torch.no_grad():
        other.model.get_input_embeddings().weight.mul_(1.01)  # changes the bf16 rounding too
    with pytest.raises(ModelMismatch, match=r"embedding_sha256: .* rounded to bfloat16"):
        lrpt.load_prompt(path, other.model, other.tokenizer)


@pytest.mark.cuda
def test_an_artifact_moves_between_devices(tmp_path) -> None:
    """Saved from the CPU, loaded on CUDA, saved there and loaded back: the same tensors."""
    cpu = tiny("causal")
    pm = _trained(cpu, "ulpt", num_tokens=4)
    first = lrpt.save_prompt(pm, tmp_path / "cpu", model_name="tiny-llama")
    gpu = place(tiny("causal"), torch.device("cuda"), torch.float32)
    on_gpu = lrpt.load_prompt(first, gpu.model, gpu.tokenizer)
    assert {p.device.type for p in on_gpu.method.parameters()} == {"cuda"}
    assert torch.equal(on_gpu.method.latent.cpu(), pm.method.latent)
    second = lrpt.save_prompt(on_gpu, tmp_path / "gpu", model_name="tiny-llama")
    back = lrpt.load_prompt(second, cpu.model, cpu.tokenizer)
    assert torch.equal(back.method.latent, pm.method.latent)
    assert lrpt.read_artifact(second)["model"] == lrpt.read_artifact(first)["model"]
