"""The library on a CUDA device: the shared prefix and the packed pass in bf16, mixed-prompt
batches and generation on both paths,
float16 training with loss scaling, gradient checkpointing, and a real server on the GPU. Every
test here is marked ``cuda`` and skips cleanly without a CUDA device."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import tiny

import lrpt
from lrpt.base_models import place

pytestmark = pytest.mark.cuda
GPU = torch.device("cuda")
STATIC = [key for key, cls in lrpt.METHODS.items() if cls.static]


def _to(batch: dict[str, torch.Tensor], where: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(where) for k, v in batch.items()}


def _on_gpu(pm: lrpt.PromptedModel, dtype: torch.dtype) -> lrpt.PromptedModel:
    """``pm`` moved to the GPU, its frozen base cast to ``dtype`` (the prompt stays float32)."""
    pm.to(GPU)
    place(lrpt.LoadedModel(pm.model, pm.tokenizer, lrpt.Family.CAUSAL, "tiny-llama"), GPU, dtype)
    return pm


@pytest.mark.parametrize("path", ["shared", "packed"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("key", STATIC)
def test_shared_prefix_equals_naive_in_bf16_on_cuda(key: str, side: str, path: str) -> None:
    """The CPU's bf16 tolerances (``tests/test_prefix.py``, with their reasoning) hold on CUDA,
    for the shared prefix and for the packed pass."""
    from test_prefix import _batch, _prompted, check_bf16_paths

    from lrpt.packed import packed_support

    pm = _on_gpu(_prompted(key), torch.bfloat16)
    assert pm.shares_prefix() and packed_support(pm.model).ok
    assert {p.device.type for p in pm.method.parameters()} == {"cuda"}
    assert {p.dtype for p in pm.method.parameters()} == {torch.float32}  # master weights
    check_bf16_paths(pm, _to(_batch(pm, side), GPU), key, path)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("key", STATIC)
def test_packed_equals_naive_in_float32_on_cuda(key: str, side: str) -> None:
    """float32 on CUDA: the CPU's float32 tolerances (loss and gradients relative 1e-5, logits
    1e-5) — both paths run on the same device, so only their summation orders differ."""
    from test_prefix import _batch, _prompted, check_float32_paths

    pm = _on_gpu(_prompted(key), torch.float32)
    check_float32_paths(pm, _to(_batch(pm, side), GPU), key, "packed")


def _bank_on_gpu(path: str = "shared"):
    from test_bank import _bank

    bank, tok = _bank()
    bank.path = path
    return bank.to(GPU), tok


@pytest.mark.parametrize("path", ["shared", "packed"])
def test_mixed_batch_on_cuda_equals_each_task_alone_on_the_cpu(path: str) -> None:
    """float32 on both devices; CUDA's kernels sum in other orders than the CPU's: atol 1e-4 on
    logits of magnitude < 1 (measured on the CPU alone: 1e-5)."""
    from test_bank import ROWS, TEXTS, _bank

    bank, tok = _bank_on_gpu(path)
    assert bank.sharing() == path
    cpu_bank, _ = _bank()
    tok.padding_side = "left"
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        mixed = bank(batch["input_ids"].cuda(), batch["attention_mask"].cuda(), ROWS).logits
    assert mixed.device.type == "cuda"
    for row, task in enumerate(ROWS):
        pm = cpu_bank.prompts[task]
        pm.share_prefix = False
        alone = tok([TEXTS[row]], return_tensors="pt")
        with torch.no_grad():
            ref = pm(alone["input_ids"], alone["attention_mask"]).logits[0]
        mine = mixed[row][batch["attention_mask"][row].bool().cuda()].cpu()
        torch.testing.assert_close(mine, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("path", ["shared", "packed"])
def test_mixed_generation_on_cuda_equals_each_task_alone(path: str) -> None:
    from test_bank import ROWS, TEXTS

    bank, tok = _bank_on_gpu(path)
    tok.padding_side = "left"
    batch = _to(dict(tok(TEXTS, return_tensors="pt", padding=True)), GPU)
    mixed = bank.generate(batch["input_ids"], batch["attention_mask"], ROWS, max_new_tokens=6)
    for row, task in enumerate(ROWS):
        pm = bank.prompts[task]
        pm.share_prefix = False
        alone = _to(dict(tok([TEXTS[row]], return_tensors="pt")), GPU)
        ref = pm.generate(alone["input_ids"], alone["attention_mask"], max_new_tokens=6,
                          do_sample=False)[0]  # fmt: skip
        pm.share_prefix = True
        assert torch.equal(mixed[row, : len(ref)], ref)


@pytest.mark.parametrize("path", ["shared", "packed"])
def test_checkpointing_with_the_shared_prefix_on_cuda(path: str) -> None:
    from test_checkpointing import _batch, _step

    loaded = place(tiny("causal"), GPU, torch.float32)
    pm = lrpt.prompt_model("dpt", loaded.model, loaded.tokenizer, num_tokens=6, rank=3, path=path)
    assert pm.shares_prefix()
    batch = _to(_batch(loaded, "causal"), GPU)
    loss, grads, kept = _step(pm, batch)
    pm.gradient_checkpointing = True
    loss_c, grads_c, kept_c = _step(pm, batch)
    # the replay runs the same kernels on the same inputs: equal to float32 rounding
    assert abs(loss_c - loss) <= 1e-6 * abs(loss)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_c[name], grad, rtol=1e-5, atol=1e-7)
    assert kept_c < 0.5 * kept and pm.shares_prefix()


def test_float16_training_on_cuda_is_stable_and_its_artifact_loads_on_the_cpu(
    tmp_path: Path, capsys
) -> None:
    from test_train_precision import FIXTURES, _cli

    from lrpt.app.cli import main

    out = tmp_path / "fp16"
    assert main(_cli(out, "--device", "cuda", "--dtype", "float16")) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["device"] == "cuda:0" and results["dtype"] == "float16"
    assert all(map(math.isfinite, results["train_loss"]))
    assert results["loss_scale"]["final"] > 0
    capsys.readouterr()
    argv = ["eval", "--prompt", str(out / "prompt"), "--data", str(FIXTURES / "topics.jsonl"),
            "--json", "--device", "cpu", "--dtype", "float32"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["examples"] > 0


def test_the_server_on_cuda_answers_as_each_prompt_alone_on_the_cpu(tmp_path: Path) -> None:
    """``lrpt serve --device cuda``: classification scores within 1e-4 of the CPU's, greedy
    generations equal."""
    pytest.importorskip("fastapi")
    import httpx
    from serving import PROMPTS, Server, save
    from test_serve import _greedy_alone, _scores_alone

    store = tmp_path / "store"
    for i, name in enumerate(PROMPTS):
        save(store, name, seed=i + 1)
    server = Server(store, "--device", "cuda", "--dtype", "float32")
    try:
        health = httpx.get(server.url + "/health").json()
        # IDPG's input encoder stays float32 on CUDA too (bf16 there would fail its fingerprint)
        assert health["status"] == "ok" and health["prompts"] == len(PROMPTS), health["refused"]
        for name in PROMPTS:
            body = {"model": name, "input": ["the film", "a long day"]}
            results = httpx.post(server.url + "/v1/classify", json=body, timeout=60).json()
            for text, result in zip(body["input"], results["data"], strict=True):
                expected = _scores_alone(store, name, text)
                assert list(result["scores"].values()) == pytest.approx(expected, abs=1e-4)
            body = {"model": name, "prompt": "the film", "max_tokens": 8, "temperature": 0}
            done = httpx.post(server.url + "/v1/completions", json=body, timeout=60).json()
            assert done["choices"][0]["text"] == _greedy_alone(store, name, "the film", 8), name
    finally:
        assert server.stop()
