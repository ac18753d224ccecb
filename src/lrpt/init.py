"""Prompt initialisations shared by the methods: from the vocabulary, from a text, at random."""

from __future__ import annotations

import torch

from lrpt.methods.base import InitContext

TOP_IDS = 5000  # vocab init samples from the 5,000 most frequent token ids


def candidate_ids(ctx: InitContext) -> torch.Tensor:
    """The ids vocab init samples from: the first ``TOP_IDS`` ids, special tokens removed.

    BPE vocabularies assign ids in merge order, so low ids are the most frequent tokens.
    """
    ids = torch.arange(min(TOP_IDS, ctx.vocab_size))
    special = set(getattr(ctx.tokenizer, "all_special_ids", []) or [])
    if special:
        ids = ids[~torch.isin(ids, torch.tensor(sorted(special)))]
    if len(ids) == 0:
        raise ValueError("the vocabulary has no non-special token to initialise a prompt from")
    return ids


def vocab_init(ctx: InitContext, n: int) -> torch.Tensor:
    """``(n, d)`` embeddings of ``n`` ids drawn uniformly (without replacement when possible)."""
    pool = candidate_ids(ctx)
    if n <= len(pool):
        pick = torch.randperm(len(pool), generator=ctx.generator)[:n]
    else:
        pick = torch.randint(len(pool), (n,), generator=ctx.generator)
    return ctx.embed(pool[pick])


def text_init(ctx: InitContext, text: str, n: int) -> torch.Tensor:
    """``(n, d)`` embeddings of ``text``'s tokens, cycled to ``n`` rows."""
    if ctx.tokenizer is None:
        raise ValueError("init 'text' needs a tokenizer")
    ids = ctx.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"init_text {text!r} has no tokens")
    ids = torch.tensor(ids)[torch.arange(n) % len(ids)]
    return ctx.embed(ids)


def random_init(ctx: InitContext, n: int) -> torch.Tensor:
    """``(n, d)`` normal rows with the embedding matrix's standard deviation."""
    weight = ctx.embedding.weight.detach().float()
    std = float(weight.std())
    return torch.randn(n, weight.shape[1], generator=ctx.generator) * std


def mean_row_norm(ctx: InitContext) -> float:
    """Mean L2 norm of the (candidate) token embeddings."""
    return float(ctx.embed(candidate_ids(ctx)).norm(dim=1).mean())
