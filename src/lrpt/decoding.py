"""Iteration-level (continuous) batching for causal LMs: rows join and leave between steps.

A :class:`Running` batch holds, for each row being decoded, its key/value cache (left-padded to
a common length, padding masked), its attention mask, the position of its next token and the
logits that choose it. New rows are prefilled on their own (after a shared prompt prefix, see
:meth:`lrpt.bank.PromptBank.prefill`, or with the prompt inside the input, :func:`prefill`)
and :meth:`Running.join` the batch at the next step; finished rows leave by
:meth:`Running.select`. One :meth:`Running.step` feeds every row its next token, so a request
that arrives while others decode waits one step, not for the whole batch to finish.

Masked padding slots take no attention weight and every row keeps its own position ids, so each
row's logits are those it gets decoded alone (up to floating-point rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel

from lrpt.cache_api import cache_argument, output_cache


@dataclass
class Running:
    """Rows decoded together (see the module docstring)."""

    keys: list[torch.Tensor]  # per layer (B, h, T, dh)
    values: list[torch.Tensor]  # per layer (B, h, T, dh)
    mask: torch.Tensor  # (B, T): 1 on each row's real cache slots
    position: torch.Tensor  # (B,): position id of each row's next token
    logits: torch.Tensor  # (B, V): the logits that choose each row's next token

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    @classmethod
    def from_cache(
        cls, cache: Any, mask: torch.Tensor, position: torch.Tensor, logits: torch.Tensor
    ) -> Running:
        layers = cache.layers
        return cls([x.keys for x in layers], [x.values for x in layers], mask, position, logits)

    def select(self, rows: list[int]) -> Running:
        """The batch of ``rows`` only, without cache columns none of them uses."""
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        mask = self.mask[index]
        used = mask.any(0).nonzero()
        first = int(used[0]) if len(used) else mask.shape[1]
        return Running(
            [k[index, :, first:] for k in self.keys], [v[index, :, first:] for v in self.values],
            mask[:, first:], self.position[index], self.logits[index],
        )  # fmt: skip

    def join(self, other: Running) -> Running:
        """This batch's rows followed by ``other``'s (caches left-padded to one length)."""
        width = max(self.mask.shape[1], other.mask.shape[1])

        def pad(x: torch.Tensor, dim_from_end: int) -> torch.Tensor:
            missing = width - x.shape[-dim_from_end]
            return F.pad(x, (0, 0) * (dim_from_end - 1) + (missing, 0)) if missing else x

        keys = [
            torch.cat([pad(a, 2), pad(b, 2)]) for a, b in zip(self.keys, other.keys, strict=True)
        ]
        values = [torch.cat([pad(a, 2), pad(b, 2)])
                  for a, b in zip(self.values, other.values, strict=True)]  # fmt: skip
        mask = torch.cat([pad(self.mask, 1), pad(other.mask, 1)])
        position = torch.cat([self.position, other.position])
        logits = torch.cat([self.logits, other.logits.to(self.logits.dtype)])
        return Running(keys, values, mask, position, logits)

    @torch.no_grad()
    def step(self, model: PreTrainedModel, tokens: torch.Tensor) -> Running:
        """Feed each row its next token ``tokens (B,)``; → the batch one token further."""
        cache = DynamicCache(
            ddp_cache_data=list(zip(self.keys, self.values, strict=True)), config=model.config
        )
        mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], 1)
        out = model(
            inputs_embeds=model.get_input_embeddings()(tokens[:, None]), attention_mask=mask,
            position_ids=self.position[:, None], use_cache=True, **cache_argument(model, cache),
        )  # fmt: skip
        logits = cast(torch.Tensor, out.logits)[:, -1]
        return Running.from_cache(cache, mask, self.position + 1, logits)


@torch.no_grad()
def prefill(
    model: PreTrainedModel,
    embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
) -> Running:
    """Run left-padded input embeddings ``(B, L, d)`` (a prompt already inside, or none) and
    keep their cache: rows ready to :meth:`Running.join` a batch."""
    if bool((attention_mask[:, -1] == 0).any()):
        raise ValueError("prefill needs left padding (pads first)")
    out = model(
        inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
        use_cache=True, logits_to_keep=1,
    )  # fmt: skip
    cache = output_cache(out)
    if cache is None:
        raise ValueError(f"{type(model).__name__} returns no key/value cache")
    logits = cast(torch.Tensor, out.logits)[:, -1]
    return Running.from_cache(cache, attention_mask.long(), position_ids[:, -1] + 1, logits)


@torch.no_grad()
def greedy(
    model: PreTrainedModel,
    running: Running,
    max_new_tokens: int,
    eos: int | list[int] | None,
    pad_id: int,
) -> torch.Tensor:
    """Greedy decoding of ``running``'s rows, like HF's ``generate(do_sample=False)``: finished
    rows get ``pad_id`` until every row has finished. Returns the new tokens ``(B, T)``."""
    device = running.mask.device
    eos_ids = torch.tensor([eos] if isinstance(eos, int) else (eos or []), device=device)
    done = torch.zeros(len(running), dtype=torch.bool, device=device)
    new: list[torch.Tensor] = []
    for _ in range(max_new_tokens):
        token = running.logits.argmax(-1).masked_fill(done, pad_id)
        new.append(token)
        done |= torch.isin(token, eos_ids)
        if bool(done.all()) or len(new) == max_new_tokens:
            break
        running = running.step(model, token)
    return torch.stack(new, 1)


def choose(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
) -> int:
    """The next token from one row's ``logits (V,)``: the argmax at temperature 0, else a sample
    from the softmax at ``temperature`` restricted to the smallest set of tokens whose
    probability reaches ``top_p`` (nucleus sampling), drawn with ``generator``."""
    if temperature == 0:
        return int(logits.argmax())
    probs = (logits.float() / temperature).softmax(-1)
    if top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        before = sorted_probs.cumsum(0) - sorted_probs  # mass of the tokens ranked above
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
