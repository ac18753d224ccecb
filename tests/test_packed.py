"""The packed pass (:mod:`lrpt.packed`): one model call, no padding, the naive path's numbers."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from conftest import tiny
from test_bank import ROWS, TEXTS, _bank
from test_prefix import (
    STATIC,
    _batch,
    _loss_and_grads,
    _prompted,
    _prompted_bf16,
    check_bf16_paths,
    check_float32_paths,
)
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedModel,
)

import lrpt
from lrpt import model as model_module
from lrpt import packed as packed_module
from lrpt.labels import IGNORE
from lrpt.packed import packed_support


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch) -> None:
    monkeypatch.setattr(model_module, "_warned", set())


@pytest.fixture(params=["sdpa", "matmul"])
def kernel(request, monkeypatch) -> str:
    """Each way the rows attend (:data:`lrpt.packed.KERNELS`), as the CPU's choice."""
    monkeypatch.setitem(packed_module.KERNELS, "cpu", request.param)
    return request.param


def _packed(key: str) -> lrpt.PromptedModel:
    pm = _prompted(key)
    pm.path = "packed"
    assert pm.sharing() == "packed"
    return pm


# --------------------------------------------------------------------------- the same numbers
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("key", STATIC)
def test_packed_equals_naive(key: str, side: str, kernel: str) -> None:
    """Loss, logits and the prompt's gradients (every row's, accumulated in one backward)."""
    pm = _packed(key)
    check_float32_paths(pm, _batch(pm, side), key, "packed")


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("key", STATIC)
def test_packed_equals_naive_in_bf16(key: str, side: str, kernel: str) -> None:
    """bf16: the tolerances stated (with their reasoning) in ``tests/test_prefix.py``."""
    pm = _prompted_bf16(key)
    assert packed_support(pm.model).ok
    check_bf16_paths(pm, _batch(pm, side), key, "packed")


@pytest.mark.parametrize("side", ["left", "right"])
def test_inference_reads_the_cached_prefix(side: str, kernel: str) -> None:
    """Without gradients the pass holds the rows only (the prompt's keys/values come from its
    cached prefix); logits equal the naive path's, and ``logits_to_keep`` keeps the last
    columns (zeros where a column is padding)."""
    pm = _packed("ulpt").eval()
    batch = _batch(pm, side)
    del batch["labels"]
    with torch.no_grad():
        packed = pm(**batch).logits
        pm.share_prefix = False
        naive = pm(**batch).logits
        pm.share_prefix = True
        last = pm(**batch, logits_to_keep=2).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(packed[real], naive[real], rtol=0, atol=1e-5)
    assert not packed[~real].any()  # padding: zeros
    torch.testing.assert_close(last, packed[:, -2:], rtol=0, atol=1e-6)  # the head on 2 rows


def test_lm_labels_and_a_row_of_only_bos(kernel: str) -> None:
    """Every token labelled (a row's first is predicted by the prompt's last position), and a
    row with no token after its BOS (its logits all come from the prompt)."""
    pm = _packed("pt")
    pm.tokenizer.padding_side = "right"
    batch = dict(pm.tokenizer(["a quiet film", "", "ok"], return_tensors="pt", padding=True))
    assert int(batch["attention_mask"][1].sum()) == 1
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE)
    check_float32_paths(pm, batch, "pt", "packed")


def test_one_model_call_without_padding() -> None:
    """The frozen model runs once, on ``[BOS] + prompt`` and every row's real tokens: no pad."""
    pm = _packed("pt")
    batch = _batch(pm, "left")
    pm.shares_prefix()  # its probes run the model: not counted
    seen: list[tuple[int, ...]] = []
    hook = pm.model.model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(tuple(kw["inputs_embeds"].shape)), with_kwargs=True
    )
    try:
        pm(**batch).loss.backward()
    finally:
        hook.remove()
    tokens = int(batch["attention_mask"].sum())  # each row's BOS is the prompt's, once
    assert seen == [(1, 1 + 6 + tokens - len(batch["input_ids"]), 64)]


def test_checkpointing_the_packed_pass_changes_nothing(kernel: str) -> None:
    pm = _packed("dpt")
    batch = _batch(pm, "right")
    loss, _, grads = _loss_and_grads(pm, batch, "packed")
    pm.gradient_checkpointing = True
    loss_c, _, grads_c = _loss_and_grads(pm, batch, "packed")
    assert abs(loss_c - loss) <= 1e-6 * abs(loss)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_c[name], grad, rtol=1e-5, atol=1e-7)


def _trained(path: str, steps: int = 50) -> dict[str, torch.Tensor]:
    pm = _prompted("ulpt")
    pm.path, pm.share_prefix = path, path != "naive"
    batch = _batch(pm, "right")
    opt = torch.optim.AdamW([p for p in pm.method.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        pm(**batch).loss.backward()
        opt.step()
    return {n: p.detach() for n, p in pm.method.named_parameters() if p.requires_grad}


def test_fifty_training_steps_end_where_the_naive_path_ends() -> None:
    """AdamW at 1e-2 for 50 steps: the prompt within float rounding of the naive path's
    (relative 1e-5; measured 1e-7)."""
    naive, packed = _trained("naive"), _trained("packed")
    for name, value in naive.items():
        assert float((packed[name] - value).norm() / value.norm()) <= 1e-5, name


@pytest.mark.parametrize("key", ["pt", "ept"])
def test_greedy_generation_after_a_packed_prefill(key: str) -> None:
    pm = _packed(key).eval()
    batch = _batch(pm, "left")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    fast = pm.generate(ids, mask, max_new_tokens=8, do_sample=False)
    pm.share_prefix = False
    naive = pm.generate(ids, mask, max_new_tokens=8, do_sample=False)
    assert fast.shape == naive.shape and torch.equal(fast, naive)


# --------------------------------------------------------------------------- mixed prompts
def test_mixed_packed_batch_with_each_kernel(kernel: str) -> None:
    """Mixed prompts on each way the rows attend (see ``tests/test_bank.py``)."""
    from test_bank import test_mixed_forward_equals_each_task_alone

    test_mixed_forward_equals_each_task_alone("right", "packed")


def test_packed_prefill_rows_decode_like_the_shared_ones() -> None:
    """:meth:`PromptBank.prefill` on the packed pass: the same first logits and, step by step,
    the same logits as the shared prefill's rows (so rows may join a running batch)."""
    bank, tok = _bank("packed")
    shared, _ = _bank()
    tok.padding_side = "left"
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    args = (batch["input_ids"], batch["attention_mask"], ROWS)
    a, b = bank.prefill(*args), shared.prefill(*args)
    model = bank.prompt("a").model
    for _ in range(3):
        torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=1e-5)
        tokens = b.logits.argmax(-1)
        a, b = a.step(model, tokens), b.step(model, tokens)
    assert torch.equal(a.position, b.position)


# --------------------------------------------------------------------------- when it cannot
def _sliding(window: int) -> lrpt.PromptedModel:
    """A tiny Mistral (sliding-window attention) with the tiny Llama's weights and tokenizer."""
    loaded = tiny("causal")
    config = MistralConfig(**{**loaded.model.config.to_dict(), "sliding_window": window})
    model = MistralForCausalLM(config).eval()
    model.load_state_dict(loaded.model.state_dict())
    return lrpt.prompt_model("pt", model, loaded.tokenizer, num_tokens=6, path="packed")


@pytest.mark.parametrize("path", ["packed", "shared"])
def test_a_sliding_window_that_covers_every_row_shares(path: str, caplog) -> None:
    """Prompt + longest row = window: full attention there, so the prompt is shared (and the
    numbers are the naive path's); one position less, and the batch runs naive, said once."""
    pm = _sliding(1024)
    batch = _batch(pm, "left")
    # packed: each row's own tokens after its BOS; shared: the padded width (BOS column kept)
    real = batch["attention_mask"].sum(1)
    span = 1 + 6 + int(real.max() - 1 if path == "packed" else batch["input_ids"].shape[1])
    pm.model.config.sliding_window = span
    check_float32_paths(pm, batch, "pt", path)
    pm.path, pm.share_prefix = path, True
    calls: list[str] = []
    original = pm._after_prefix_forward
    pm._after_prefix_forward = lambda *a: calls.append(a[0]) or original(*a)  # type: ignore
    pm(**batch)
    assert calls == [path]
    pm.model.config.sliding_window = span - 1
    with caplog.at_level(logging.WARNING, logger="lrpt.model"):
        pm(**batch)
        pm(**batch)
    assert calls == [path]  # not shared: every row
    (record,) = caplog.records
    assert record.getMessage() == (
        "lrpt: the prompt runs with every row, not as a shared prefix: in batches where a row "
        f"with its prompt is longer than the model's sliding window ({span - 1} positions)"
    )


def test_sliding_window_generation_counts_the_new_tokens() -> None:
    pm = _sliding(1024).eval()
    batch = _batch(pm, "left")
    span = 1 + 6 + int(batch["attention_mask"].sum(1).max() - 1)
    pm.model.config.sliding_window = span + 8
    routes: list[Any] = []
    original = pm._route
    pm._route = lambda *a: routes.append(original(*a)) or routes[-1]  # type: ignore
    ids, mask = batch["input_ids"], batch["attention_mask"]
    fast = pm.generate(ids, mask, max_new_tokens=8, do_sample=False)
    pm.generate(ids, mask, max_new_tokens=9, do_sample=False)
    assert routes == ["packed", None]
    pm.share_prefix = False
    assert torch.equal(fast, pm.generate(ids, mask, max_new_tokens=8, do_sample=False))


class DropsKwargs(LlamaForCausalLM):
    """A model that hands no keyword arguments down to its attention layers."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("lrpt_packing", None)
        return super().forward(*args, **kwargs)


def _copy_as(cls: type[PreTrainedModel]) -> lrpt.LoadedModel:
    loaded = tiny("causal")
    model = cls(loaded.model.config)
    model.load_state_dict(loaded.model.state_dict())
    return lrpt.LoadedModel(model.eval(), loaded.tokenizer, "causal", "copy")


def _gemma2() -> lrpt.LoadedModel:
    """A tiny Gemma 2: attention logits soft-capped, which the packed pass does not do."""
    loaded = tiny("causal")
    config = Gemma2Config(
        vocab_size=len(loaded.tokenizer), hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, attn_logit_softcapping=50.0,
    )  # fmt: skip
    torch.manual_seed(0)
    return lrpt.LoadedModel(Gemma2ForCausalLM(config).eval(), loaded.tokenizer, "causal", "g2")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: _copy_as(DropsKwargs), "DropsKwargs ran 0 of its 2 attention layers packed "
         "(each must take transformers' attention registry and the model's keyword arguments)"),
        (_gemma2, "Gemma2ForCausalLM: the model's attention uses softcap"),
    ],
)  # fmt: skip
def test_a_model_the_packed_pass_cannot_follow_runs_shared(make, reason: str, caplog) -> None:
    loaded = make()
    assert packed_support(loaded.model).reason == reason
    pm = lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=4, path="packed")
    with caplog.at_level(logging.INFO, logger="lrpt.model"):
        assert pm.sharing() == "shared"
        assert pm.sharing() == "shared"  # said once
    (record,) = caplog.records
    assert record.levelno == logging.WARNING  # asked for by name
    assert record.getMessage() == f"lrpt: the prompt runs as a shared prefix, not packed: {reason}"
    assert not pm.prefix_path().endswith("(lrpt.packed)")


def test_paths_are_named_and_checked() -> None:
    loaded = tiny("causal")
    with pytest.raises(ValueError, match=r"unknown prompt path 'fast': expected one of auto, "):
        lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=2, path="fast")
    pm = lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=2, path="auto")
    assert pm.prefix_path() == (
        "shared prefix: [BOS] + prompt runs once per batch (training) or once per task "
        "(inference); packed: one model call, every row's tokens without padding (lrpt.packed)"
    )
    pm.path = "naive"
    assert pm.unshared_reason() == "turned off (path='naive')"
    from lrpt.bank import PromptBank

    with pytest.raises(ValueError, match=r"unknown bank path 'naive': expected one of auto, "):
        PromptBank(path="naive")
