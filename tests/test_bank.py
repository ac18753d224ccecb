"""Mixed-task batches: every row gets what its task's prompt gives it alone."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

import lrpt
from lrpt.bank import PromptBank

TEXTS = ["a quiet film", "loud and very long, but fun", "ok", "the plot", "meh", "so good"]
TASKS = {"a": ("pt", {"num_tokens": 5}), "b": ("ulpt", {"num_tokens": 9, "rank": 2}),
         "c": ("ept", {}), "d": ("dpt", {"num_tokens": 3})}  # fmt: skip
ROWS = ["a", "b", "c", "d", "b", "a"]


def _bank(path: str = "shared") -> tuple[PromptBank, object]:
    loaded = tiny("causal")
    prompts = {}
    for seed, (name, (key, opts)) in enumerate(TASKS.items()):
        pm = lrpt.prompt_model(key, loaded.model, loaded.tokenizer, seed=seed, **opts).eval()
        with torch.no_grad():
            for p in pm.method.parameters():
                if p.requires_grad and not bool(p.any()):
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(7)) * 0.1)
        prompts[name] = pm
    return PromptBank(prompts, path=path), loaded.tokenizer


@pytest.mark.parametrize("path", ["shared", "packed"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_mixed_forward_equals_each_task_alone(side: str, path: str) -> None:
    """Four prompts of three lengths (three methods), each row with its own prompt only, on the
    shared prefixes and in one packed pass."""
    bank, tok = _bank(path)
    assert bank.sharing() == path
    tok.padding_side = side
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    mixed = bank(batch["input_ids"], batch["attention_mask"], ROWS).logits
    for row, task in enumerate(ROWS):
        pm = bank.prompts[task]
        pm.share_prefix = False  # the naive path, one row at a time
        alone = tok([TEXTS[row]], return_tensors="pt")
        with torch.no_grad():
            ref = pm(alone["input_ids"], alone["attention_mask"]).logits[0]
        pm.share_prefix = True
        mine = mixed[row][batch["attention_mask"][row].bool()]
        torch.testing.assert_close(mine, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("path", ["shared", "packed"])
def test_mixed_generate_equals_each_task_alone(path: str) -> None:
    bank, tok = _bank(path)
    tok.padding_side = "left"
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    mixed = bank.generate(batch["input_ids"], batch["attention_mask"], ROWS, max_new_tokens=6)
    for row, task in enumerate(ROWS):
        pm = bank.prompts[task]
        pm.share_prefix = False
        alone = tok([TEXTS[row]], return_tensors="pt")
        ref = pm.generate(alone["input_ids"], alone["attention_mask"], max_new_tokens=6,
                          do_sample=False)[0]  # fmt: skip
        pm.share_prefix = True
        assert torch.equal(mixed[row, : len(ref)], ref)


def test_bank_rejects_bad_input() -> None:
    bank, tok = _bank()
    batch = tok(["x", "y"], return_tensors="pt", padding=True)
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['zz'\]"):
        bank(batch["input_ids"], batch["attention_mask"], ["a", "zz"])
    with pytest.raises(ValueError, match="got 1 task names for a batch of 2"):
        bank(batch["input_ids"], batch["attention_mask"], ["a"])
    with pytest.raises(ValueError, match="already in the bank"):
        bank.add("a", bank.prompts["a"])
    other = tiny("causal")
    with pytest.raises(ValueError, match="another base model"):
        bank.add("e", lrpt.prompt_model("pt", other.model, other.tokenizer, num_tokens=2))
    t5 = tiny("seq2seq")
    with pytest.raises(ValueError, match="static prompt on a causal LM"):
        bank.add("f", lrpt.prompt_model("pt", t5.model, t5.tokenizer, num_tokens=2))
