"""Shared prompt prefixes: same loss, gradients, logits and generations as the naive path."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

import lrpt
from lrpt.methods import METHODS
from lrpt.model import IGNORE

TEXTS = ["a quiet film", "loud and very long, but fun", "ok"]
STATIC = [key for key, cls in METHODS.items() if cls.static]  # every method, as registered


def _prompted(key: str) -> lrpt.PromptedModel:
    loaded = tiny("causal")
    pm = lrpt.prompt_model(key, loaded.model, loaded.tokenizer, seed=0,
                           **({"num_tokens": 6} if key not in ("dept", "ept") else {}))  # fmt: skip
    with torch.no_grad():  # zero-initialised factors would hide a wrong input update
        g = torch.Generator().manual_seed(1)
        for param in pm.method.parameters():
            if param.requires_grad and not bool(param.any()):
                param.copy_(torch.randn(param.shape, generator=g) * 0.1)
    return pm


def _batch(pm: lrpt.PromptedModel, side: str) -> dict[str, torch.Tensor]:
    pm.tokenizer.padding_side = side
    batch = dict(pm.tokenizer(TEXTS, return_tensors="pt", padding=True))
    target = torch.zeros_like(batch["attention_mask"], dtype=torch.bool)
    for row, mask in enumerate(batch["attention_mask"]):
        last = int(mask.nonzero().max())
        target[row, last - 1 : last + 1] = True  # the last two tokens are the target
    batch["labels"] = batch["input_ids"].masked_fill(~target, IGNORE)
    return batch


def _loss_and_grads(pm: lrpt.PromptedModel, batch: dict, path: str):
    """Loss, logits and the prompt's gradients of ``pm`` on ``batch`` on ``path`` (see
    :class:`lrpt.PromptedModel`)."""
    pm.path = path
    pm.share_prefix = path != "naive"
    pm.zero_grad()
    out = pm(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in pm.method.named_parameters() if p.requires_grad}
    return out.loss.detach(), out.logits.detach(), grads


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("key", STATIC)
def test_shared_prefix_equals_naive(key: str, side: str) -> None:
    pm = _prompted(key)
    assert pm.shares_prefix()
    check_float32_paths(pm, _batch(pm, side), key, "shared")


def check_float32_paths(pm: lrpt.PromptedModel, batch: dict, key: str, path: str) -> None:
    """The ``path`` (shared or packed) and naive paths of ``pm`` on ``batch``: loss, logits at
    the real tokens and the prompt's gradients equal to float32 rounding."""
    loss_s, logits_s, grads_s = _loss_and_grads(pm, batch, path)
    loss_n, logits_n, grads_n = _loss_and_grads(pm, batch, "naive")
    assert abs(loss_s - loss_n) <= 1e-5 * abs(loss_n)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(logits_s[real], logits_n[real], rtol=0, atol=1e-5)
    assert grads_s.keys() == grads_n.keys() and grads_s
    for name, grad in grads_n.items():
        assert grad.norm() > 0, name
        rel = (grads_s[name] - grad).norm() / grad.norm()
        assert rel <= 1e-5, f"{key}.{name}: relative gradient difference {rel:.2e}"


def test_lm_style_labels_match_too() -> None:
    """Every token labelled (the first one is predicted by the prefix's last position)."""
    pm = _prompted("pt")
    batch = _batch(pm, "left")
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE)
    loss_s, _, _ = _loss_and_grads(pm, batch, "shared")
    loss_n, _, _ = _loss_and_grads(pm, batch, "naive")
    assert abs(loss_s - loss_n) <= 1e-5 * abs(loss_n)


def test_instance_dependent_and_seq2seq_use_the_naive_path() -> None:
    from conftest import tiny_encoder

    loaded = tiny("causal")
    lopa = lrpt.prompt_model("lopa", loaded.model, loaded.tokenizer, encoder=tiny_encoder())
    assert not lopa.shares_prefix()
    t5 = tiny("seq2seq")
    assert not lrpt.prompt_model("pt", t5.model, t5.tokenizer).shares_prefix()


def test_inference_prefix_is_cached_until_the_prompt_changes() -> None:
    pm = _prompted("ulpt").eval()
    with torch.no_grad():
        first = pm.prefix_state(True)
        assert pm.prefix_state(True) is first
        pm.method.intercept_row = None  # unrelated attribute: no effect on the cache
        assert pm.prefix_state(True) is first
    opt = torch.optim.SGD(pm.method.parameters(), lr=0.1)
    batch = _batch(pm, "left")
    pm(**batch).loss.backward()
    opt.step()
    with torch.no_grad():
        again = pm.prefix_state(True)
    assert again is not first
    assert not torch.equal(again.keys[0], first.keys[0])


@pytest.mark.parametrize("key", ["pt", "ept"])
def test_greedy_generate_equals_naive_generate(key: str) -> None:
    pm = _prompted(key).eval()
    batch = _batch(pm, "left")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    pm.share_prefix = True
    fast = pm.generate(ids, mask, max_new_tokens=8, do_sample=False)
    pm.share_prefix = False
    naive = pm.generate(ids, mask, max_new_tokens=8, do_sample=False)
    assert fast.shape == naive.shape
    assert torch.equal(fast, naive)


def test_prompt_built_in_inference_mode_is_served() -> None:
    loaded = tiny("causal")
    with torch.inference_mode():
        pm = lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=3).eval()
        batch = loaded.tokenizer(TEXTS, return_tensors="pt", padding=True)
        first = pm(**batch, logits_to_keep=1).logits
        assert pm(**batch, logits_to_keep=1).logits.equal(first)


# --------------------------------------------------------------------------- bfloat16
# bf16 keeps 8 significant bits: unit roundoff u = 2**-8 ≈ 3.9e-3. The shared and naive paths
# compute the same sums in other shapes and orders (the prefix runs alone, its keys are
# concatenated), so each rounds differently. Tolerances, with the largest differences measured
# on these tiny models over all static methods and both padding sides in brackets:
# * logits (|logit| < 1 here): 2.5 ulps at magnitude 1, atol 1e-2 [3.9e-3 = 1 ulp];
# * the loss, a float32 mean of cross-entropies over many tokens whose rounding errors partly
#   cancel: relative 1e-3 = u / 4 [4.9e-5];
# * gradients, accumulated through the bf16 backward of every layer: relative 3e-2 ≈ 8 u
#   [9.9e-3], still far below the gap to a wrong gradient (relative difference ~1).
BF16_LOGITS_ATOL = 1e-2
BF16_LOSS_RTOL = 1e-3
BF16_GRAD_RTOL = 3e-2


def _prompted_bf16(key: str) -> lrpt.PromptedModel:
    from lrpt.base_models import place

    pm = _prompted(key)
    place(lrpt.LoadedModel(pm.model, pm.tokenizer, lrpt.Family.CAUSAL, "tiny-llama"),
          torch.device("cpu"), torch.bfloat16)  # fmt: skip
    return pm


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("key", STATIC)
def test_shared_prefix_equals_naive_in_bf16(key: str, side: str) -> None:
    pm = _prompted_bf16(key)
    assert pm.shares_prefix()
    assert {p.dtype for p in pm.method.parameters()} == {torch.float32}  # master weights
    check_bf16_paths(pm, _batch(pm, side), key)


def check_bf16_paths(pm: lrpt.PromptedModel, batch: dict, key: str, path: str = "shared") -> None:
    """The ``path`` (shared or packed) and naive paths of ``pm`` (a bf16 base) on ``batch``:
    bf16 logits, float32 loss and gradients on the model's device, each within the tolerances
    above."""
    loss_s, logits_s, grads_s = _loss_and_grads(pm, batch, path)
    loss_n, logits_n, grads_n = _loss_and_grads(pm, batch, "naive")
    assert logits_s.dtype == logits_n.dtype == torch.bfloat16
    assert loss_s.dtype == torch.float32  # the loss is taken in float32
    assert abs(loss_s - loss_n) <= BF16_LOSS_RTOL * abs(loss_n)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(
        logits_s[real].float(), logits_n[real].float(), rtol=0, atol=BF16_LOGITS_ATOL
    )
    assert grads_s.keys() == grads_n.keys() and grads_s
    device = batch["input_ids"].device
    for name, grad in grads_n.items():
        assert grad.dtype == torch.float32 and grad.device == device and grad.norm() > 0, name
        rel = (grads_s[name] - grad).norm() / grad.norm()
        assert rel <= BF16_GRAD_RTOL, f"{key}.{name}: relative gradient difference {rel:.2e}"
