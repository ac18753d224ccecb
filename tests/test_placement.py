"""Devices and precisions: names resolve and are checked; the frozen base moves and casts; the
prompt stays float32 and follows the model's device; an encoder classifier's head stays float32."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

import lrpt
from lrpt.base_models import place
from lrpt.model import IGNORE
from lrpt.placement import available_devices, resolve_device, resolve_dtype

NO_CUDA = not torch.cuda.is_available()
TEXTS = ["a quiet film", "loud and very long, but fun", "ok"]


def test_device_names_resolve() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("auto").type == ("cpu" if NO_CUDA else "cuda")
    assert available_devices()[0] == "cpu"


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "CPU", ""])
def test_malformed_device_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=r"device must be one of auto, cpu, cuda, cuda:N, mps"):
        resolve_device(name)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_an_unavailable_device_is_one_clear_error(name: str) -> None:
    with pytest.raises(ValueError) as err:
        lrpt.load_model("tiny-llama", device=name)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"device {name!r} is not available on this machine (torch ")
    assert message.endswith("available: cpu (or auto)")


def test_dtype_names_resolve() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) is torch.float32  # auto is float32 on the CPU
    assert resolve_dtype(None, cpu) is torch.float32
    assert resolve_dtype("bfloat16", cpu) is torch.bfloat16
    assert resolve_dtype(torch.float16, cpu) is torch.float16
    with pytest.raises(ValueError, match="dtype must be one of auto, float32, bfloat16, float16"):
        resolve_dtype("half", cpu)


def test_load_model_casts_parameters_not_buffers() -> None:
    loaded = lrpt.load_model("tiny-llama", device="cpu", dtype="bfloat16")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    rotary = dict(loaded.model.named_buffers())["model.rotary_emb.inv_freq"]
    assert rotary.dtype is torch.float32  # positions keep their float32 frequencies
    plain = lrpt.load_model("tiny-llama")
    assert {p.dtype for p in plain.model.parameters()} == {torch.float32}  # None: as loaded
    weight = plain.model.get_input_embeddings().weight
    cast = loaded.model.get_input_embeddings().weight
    assert torch.equal(cast, weight.to(torch.bfloat16))  # round to nearest, once


def test_bf16_base_gives_close_logits_and_a_float32_prompt() -> None:
    """bf16 keeps 8 significant bits (unit roundoff 2**-8 ≈ 0.004): the tiny model's logits
    (|logit| < 1) differ from float32's by a few of its ulps."""
    f32 = tiny("causal")
    bf16 = place(tiny("causal"), torch.device("cpu"), torch.bfloat16)
    batch = f32.tokenizer(TEXTS, return_tensors="pt", padding=True)
    outs = []
    for loaded in (f32, bf16):
        pm = lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=4, seed=0)
        assert {p.dtype for p in pm.method.parameters()} == {torch.float32}
        outs.append(pm(**batch).logits)
    assert outs[1].dtype is torch.bfloat16
    diff = (outs[0] - outs[1].float()).abs().max().item()
    assert 0 < diff < 0.05


def test_method_init_is_the_same_on_any_base_dtype_and_seed() -> None:
    """Initialisation draws from a CPU generator: a seed gives the same tensors bit for bit
    on a float32 and a bf16 base (vocab init reads embeddings, rounded on the bf16 one)."""
    f32 = tiny("causal")
    bf16 = place(tiny("causal"), torch.device("cpu"), torch.bfloat16)
    a = lrpt.build_method("ulpt", f32.model, f32.tokenizer, seed=3, num_tokens=5)
    b = lrpt.build_method("ulpt", bf16.model, bf16.tokenizer, seed=3, num_tokens=5)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    p32 = lrpt.build_method("pt", f32.model, f32.tokenizer, seed=3, num_tokens=5)
    p16 = lrpt.build_method("pt", bf16.model, bf16.tokenizer, seed=3, num_tokens=5)
    assert torch.equal(p32.prompt_embeddings.to(torch.bfloat16).float(), p16.prompt_embeddings)


def test_encoder_head_stays_float32_on_a_bf16_base() -> None:
    loaded = place(tiny("encoder"), torch.device("cpu"), torch.bfloat16)
    pm = lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=4)
    head = pm.named_head_parameters()
    assert set(head) == {"classifier.weight", "classifier.bias"}
    assert {p.dtype for p in head.values()} == {torch.float32}
    assert pm.model.bert.embeddings.word_embeddings.weight.dtype is torch.bfloat16
    batch = loaded.tokenizer(TEXTS, return_tensors="pt", padding=True)
    out = pm(batch["input_ids"], batch["attention_mask"], labels=torch.tensor([0, 1, 1]))
    assert out.logits.dtype is torch.float32  # the head's output: float32
    out.loss.backward()
    assert all(p.grad is not None and p.grad.dtype is torch.float32 for p in head.values())
    assert pm.method.prompt_embeddings.grad.dtype is torch.float32
    again = lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=4)
    assert again(**batch).logits.dtype is torch.float32  # one hook, however many prompts


def test_float32_encoder_head_is_untouched() -> None:
    loaded = tiny("encoder")
    classifier = loaded.model.classifier
    pm = lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=4)
    assert not classifier._forward_pre_hooks  # no cast on a float32 base
    assert pm.model.classifier is classifier


# --------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
def test_cuda_prompt_follows_the_model_and_init_reproduces_the_cpu_one() -> None:
    cpu = tiny("causal")
    gpu = place(tiny("causal"), torch.device("cuda"), torch.float32)
    a = lrpt.prompt_model("dpt", cpu.model, cpu.tokenizer, seed=5, num_tokens=4, rank=2)
    b = lrpt.prompt_model("dpt", gpu.model, gpu.tokenizer, seed=5, num_tokens=4, rank=2)
    assert {p.device.type for p in b.method.parameters()} == {"cuda"}
    for name, value in a.method.state_dict().items():
        assert torch.equal(value, b.method.state_dict()[name].cpu()), name
    batch = cpu.tokenizer(TEXTS, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE)
    loss_cpu = a(**batch, labels=labels).loss
    loss_gpu = b(**{k: v.cuda() for k, v in batch.items()}, labels=labels.cuda()).loss
    assert abs(loss_cpu.item() - loss_gpu.item()) < 1e-4 * abs(loss_cpu.item())


@pytest.mark.cuda
def test_cuda_bf16_training_step_keeps_float32_master_weights() -> None:
    loaded = lrpt.load_model("tiny-llama", device="cuda", dtype="auto")
    if torch.cuda.is_bf16_supported():
        assert loaded.model.dtype is torch.bfloat16  # auto on CUDA
    pm = lrpt.prompt_model("ulpt", loaded.model, loaded.tokenizer, num_tokens=4)
    opt = torch.optim.AdamW([p for p in pm.method.parameters() if p.requires_grad], lr=0.1)
    batch = {k: v.cuda() for k, v in loaded.tokenizer(TEXTS, return_tensors="pt",
                                                       padding=True).items()}  # fmt: skip
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE)
    before = pm.method.latent.detach().clone()
    pm(**batch, labels=labels).loss.backward()
    opt.step()
    assert not torch.equal(before, pm.method.latent)
    states = [t for s in opt.state.values() for t in s.values() if t.is_floating_point()]
    assert states and all(t.dtype is torch.float32 for t in states)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_on_the_cpu_takes_eager_attention(dtype: torch.dtype) -> None:
    full = tiny("causal")
    assert full.model.config._attn_implementation == "sdpa"
    assert place(full, torch.device("cpu"), torch.float32).model.config._attn_implementation == (
        "sdpa"
    )  # fmt: skip
    half = place(tiny("causal"), torch.device("cpu"), dtype)
    assert half.model.config._attn_implementation == "eager"
    batch = full.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = full.model(**batch).logits
        got = half.model(**batch).logits.float()
    real = batch["attention_mask"].bool()
    # the same model at 8 (bf16) or 11 (fp16) significant bits: logits of magnitude < 1
    torch.testing.assert_close(got[real], ref[real], rtol=0, atol=2e-2)
