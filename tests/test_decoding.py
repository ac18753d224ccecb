"""Iteration-level batching (:mod:`lrpt.decoding`) and the prefix LRU (:mod:`lrpt.prefix_cache`):
rows that join a running batch mid-decode get the tokens and logits they get alone."""

from __future__ import annotations

import pytest
import torch
from test_bank import TASKS, TEXTS, _bank

from lrpt.bank import PromptBank
from lrpt.decoding import Running, choose, prefill
from lrpt.prefix_cache import PrefixCache, state_bytes


def _alone_greedy(bank: PromptBank, tok: object, task: str, text: str, steps: int) -> list[int]:
    pm = bank.prompt(task)
    pm.share_prefix = False  # the naive path: the prompt inside the input, HF generate
    batch = tok([text], return_tensors="pt")  # type: ignore[operator]
    out = pm.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=steps,
                      do_sample=False, eos_token_id=[])[0]  # fmt: skip
    pm.share_prefix = True
    return out.tolist()


def _prefill(bank: PromptBank, tok: object, tasks: list[str], texts: list[str]) -> Running:
    tok.padding_side = "left"  # type: ignore[attr-defined]
    batch = tok(texts, return_tensors="pt", padding=True)  # type: ignore[operator]
    return bank.prefill(batch["input_ids"], batch["attention_mask"], tasks)


def test_rows_joining_mid_decode_get_their_tokens_alone() -> None:
    bank, tok = _bank()
    steps = 6
    running = _prefill(bank, tok, ["a", "b"], TEXTS[:2])
    rows = [("a", TEXTS[0]), ("b", TEXTS[1])]
    out: list[list[int]] = [[], []]
    with torch.no_grad():
        for step in range(steps + 4):
            tokens = running.logits.argmax(-1)
            for i, t in enumerate(tokens.tolist()):
                out[i].append(t)
            if step == 1:  # two rows of other tasks arrive while the first two decode
                running = running.step(bank.prompt("a").model, tokens)
                running = running.join(_prefill(bank, tok, ["c", "d"], TEXTS[2:4]))
                rows += [("c", TEXTS[2]), ("d", TEXTS[3])]
                out += [[], []]
                continue
            done = [i for i, row in enumerate(out) if len(row) >= steps]
            if done:  # finished rows leave the batch
                keep = [i for i in range(len(out)) if i not in done]
                for i in done:
                    task, text = rows[i]
                    assert out[i] == _alone_greedy(bank, tok, task, text, steps), (task, text)
                if not keep:
                    break
                rows = [rows[i] for i in keep]
                out = [out[i] for i in keep]
                running = running.select(keep)
                tokens = tokens[keep]
            running = running.step(bank.prompt("a").model, tokens)
    assert not keep


def test_prefill_with_the_prompt_inside_joins_too() -> None:
    """The base model (no prompt) decodes in the same batch as shared-prefix rows."""
    bank, tok = _bank()
    model = bank.prompt("a").model
    batch = tok([TEXTS[1]], return_tensors="pt")
    embeds = model.get_input_embeddings()(batch["input_ids"])
    positions = torch.arange(batch["input_ids"].shape[1])[None]
    with torch.no_grad():
        plain = prefill(model, embeds, batch["attention_mask"], positions)
        running = _prefill(bank, tok, ["b"], [TEXTS[0]]).join(plain)
        got = []
        for _ in range(5):
            tokens = running.logits.argmax(-1)
            got.append(int(tokens[1]))
            running = running.step(model, tokens)
        ref = model.generate(**batch, max_new_tokens=5, do_sample=False, eos_token_id=[])
    assert got == ref[0, batch["input_ids"].shape[1] :].tolist()


def test_choose_greedy_and_nucleus() -> None:
    logits = torch.tensor([0.0, 3.0, 2.9, -5.0])
    assert choose(logits, 0, 1, None) == 1
    # probabilities ≈ 0.026, 0.51, 0.46, 0.0002: top_p 0.5 keeps token 1 alone, 0.9 tokens 1, 2
    draws = {choose(logits, 1.0, 0.5, torch.Generator().manual_seed(s)) for s in range(50)}
    assert draws == {1}
    draws = {choose(logits, 1.0, 0.9, torch.Generator().manual_seed(s)) for s in range(50)}
    assert draws == {1, 2}
    wide = {choose(logits, 1.0, 1.0, torch.Generator().manual_seed(s)) for s in range(300)}
    assert 0 in wide
    first = [choose(logits, 1.0, 1.0, torch.Generator().manual_seed(3)) for _ in range(3)]
    assert len(set(first)) == 1  # seeded: the same draw


def test_prefix_lru_is_bounded_and_exact() -> None:
    bank, tok = _bank()
    one = state_bytes(bank.prompt("b").prefix_state(True))
    cache = PrefixCache(max_bytes=int(one * 2.5))
    lru = PromptBank(dict(bank.prompts.items()), prefix_cache=cache)  # type: ignore[arg-type]
    tok.padding_side = "left"
    batch = tok(TEXTS[:4], return_tensors="pt", padding=True)
    tasks = list(TASKS)
    with torch.no_grad():
        ref = bank(batch["input_ids"], batch["attention_mask"], tasks).logits
        for _ in range(3):
            got = lru(batch["input_ids"], batch["attention_mask"], tasks).logits
            torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert cache.bytes <= cache.max_bytes or len(cache) == 1
    assert cache.evictions > 0 and cache.misses > len(tasks)
    with torch.no_grad():
        lru(batch["input_ids"][:1], batch["attention_mask"][:1], ["a"])
        lru(batch["input_ids"][:1], batch["attention_mask"][:1], ["a"])
    assert cache.hits >= 1
    before = len(cache)
    lru.remove("a")
    assert len(cache) == before - 1 and "a" not in lru.tasks


def test_prefix_cache_rejects_a_negative_cap() -> None:
    with pytest.raises(ValueError, match="cap must be ≥ 0 bytes, got -1"):
        PrefixCache(-1)
    assert PrefixCache(0).max_bytes == 0  # the boundary: a cap of 0 bytes is accepted


def test_a_static_prompt_as_raw_prompt_embeds() -> None:
    """What docs/serving.md hands to an engine that takes ``prompt_embeds`` (e.g. vLLM): the
    input's token embeddings with the materialised prompt after the BOS give the prompted
    model's greedy tokens through plain Hugging Face ``generate(inputs_embeds=...)``."""
    bank, tok = _bank()
    pm = bank.prompt("b")  # ulpt: a prompt only, no update of the input embeddings
    model = pm.model
    ids = tok([TEXTS[1]], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        prompt = pm.method.materialise()  # (n, d)
        tokens = model.get_input_embeddings()(ids[0])  # (L, d), BOS first
        embeds = torch.cat([tokens[:1], prompt.to(tokens.dtype), tokens[1:]])  # (L + n, d)
        plain = model.generate(inputs_embeds=embeds[None], attention_mask=torch.ones(1, len(embeds),
                               dtype=torch.long), max_new_tokens=6, do_sample=False,
                               eos_token_id=[])  # fmt: skip
        shared = pm.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=[])
    assert pm.shares_prefix()  # lrpt's own path: the cached prefix, not these embeddings
    assert plain[0].tolist() == shared[0].tolist()
