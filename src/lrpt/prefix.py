"""Shared prompt prefixes for causal LMs: run ``[BOS] + prompt`` once, reuse its keys/values.

A static prompt sits before the input, so under causal attention its keys and values do not depend
on the input. Instead of recomputing them for every example (``B × (n + L)`` token positions per
layer), the prefix runs once with batch size 1 and every row attends to its cached keys/values
(``n + B × L`` positions). In training the prefix is recomputed once per batch *with* its autograd
graph, so gradients from every row flow back into the method's parameters; at inference it is
computed once per task and reused until the prompt's parameters change.

Rows may use different prefixes (mixed-task batches): shorter prefixes are left-padded with masked
slots. Their keys already carry their own rotary positions, so padding does not move them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from lrpt.cache_api import cache_argument, output_cache
from lrpt.decoding import Running, greedy
from lrpt.labels import IGNORE

if TYPE_CHECKING:
    from transformers import PreTrainedConfig


@dataclass
class PrefixState:
    """One prefix's per-layer keys/values ``(1, h, P, dh)`` and the logits it produces."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int  # P = n (+ 1 with a lead BOS)
    last_logits: torch.Tensor  # (1, V): predicts the first input token
    lead_logits: torch.Tensor | None  # (1, V): the logits at the lead BOS, if the prefix has one


@dataclass
class BatchPrefix:
    """Prefixes laid out for a batch: a cache, its mask and per-row lengths."""

    cache: DynamicCache
    mask: torch.Tensor  # (B, P_max), 1 on each row's own prefix slots (right-aligned)
    lengths: torch.Tensor  # (B,)
    last_logits: torch.Tensor  # (B, V)
    lead_logits: torch.Tensor | None  # (B, V)


def prefix_embeds(
    model: PreTrainedModel, prompt: torch.Tensor, lead_id: int | None
) -> torch.Tensor:
    """``[lead] + prompt`` (``prompt (1, n, d)``) as input embeddings ``(1, P, d)`` of the model."""
    embedding = model.get_input_embeddings()
    rows = prompt.to(cast(torch.Tensor, embedding.weight).dtype)
    if lead_id is not None:
        lead = embedding(torch.tensor([[lead_id]], device=rows.device))  # (1, 1, d)
        rows = torch.cat([lead, rows], 1)
    return rows


def run_prefix(model: PreTrainedModel, prompt: torch.Tensor, lead_id: int | None) -> PrefixState:
    """Run ``[lead] + prompt`` (``prompt (1, n, d)``) through ``model`` once and keep its cache."""
    rows = prefix_embeds(model, prompt, lead_id)
    length = rows.shape[1]
    keep = torch.tensor([0, length - 1], device=rows.device)
    out = model(
        inputs_embeds=rows,
        position_ids=torch.arange(length, device=rows.device)[None],
        use_cache=True,
        logits_to_keep=keep,
    )
    cache = output_cache(out)
    return PrefixState(
        keys=[layer.keys for layer in cache.layers],
        values=[layer.values for layer in cache.layers],
        length=length,
        last_logits=out.logits[:, 1],
        lead_logits=out.logits[:, 0] if lead_id is not None else None,
    )


def batch_prefix(
    states: Sequence[PrefixState], rows: torch.Tensor, config: PreTrainedConfig
) -> BatchPrefix:
    """Lay out ``states`` for a batch whose row ``b`` uses ``states[rows[b]]``.

    With one state the keys/values are expanded (views, no copies).
    """
    B = rows.shape[0]
    if len(states) == 1:
        (state,) = states
        data = [(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1))
                for k, v in zip(state.keys, state.values, strict=True)]  # fmt: skip
        device = state.last_logits.device
        mask = torch.ones(B, state.length, dtype=torch.long, device=device)
        lengths = torch.full((B,), state.length, dtype=torch.long, device=device)
        last = state.last_logits.expand(B, -1)
        lead = state.lead_logits.expand(B, -1) if state.lead_logits is not None else None
        return BatchPrefix(DynamicCache(ddp_cache_data=data, config=config), mask, lengths,
                           last, lead)  # fmt: skip
    width = max(s.length for s in states)
    data = prefix_rows(states, rows)
    lengths = torch.tensor([s.length for s in states], device=rows.device)[rows]
    slots = torch.arange(width, device=rows.device)[None]
    mask = (slots >= width - lengths[:, None]).long()
    last = torch.cat([s.last_logits for s in states])[rows]
    leads = [s.lead_logits for s in states if s.lead_logits is not None]
    lead = torch.cat(leads)[rows] if len(leads) == len(states) else None
    return BatchPrefix(DynamicCache(ddp_cache_data=data, config=config), mask, lengths, last, lead)


def prefix_rows(
    states: Sequence[PrefixState], rows: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the keys and values ``(B, h, P_max, dh)`` of row ``b``'s prefix
    ``states[rows[b]]``, left-padded with zeros to the longest prefix."""
    width = max(s.length for s in states)
    return [
        (torch.cat([_left_pad(s.keys[layer], width) for s in states])[rows],
         torch.cat([_left_pad(s.values[layer], width) for s in states])[rows])
        for layer in range(len(states[0].keys))
    ]  # fmt: skip


def _left_pad(x: torch.Tensor, width: int) -> torch.Tensor:
    """``(1, h, P, dh)`` → ``(1, h, width, dh)`` with zeros in front."""
    return F.pad(x, (0, 0, width - x.shape[2], 0))


def forward_with_prefix(
    model: PreTrainedModel,
    embeds: torch.Tensor,
    rest_mask: torch.Tensor,
    lead_cols: torch.Tensor,
    prefix: BatchPrefix,
    labels: torch.Tensor | None = None,
    logits_to_keep: int = 0,
) -> CausalLMOutputWithPast:
    """Run the input ``embeds (B, L, d)`` after the cached prefixes.

    ``rest_mask (B, L)`` is the attention mask with each row's lead BOS (now in the prefix)
    masked out; ``lead_cols (B, L)`` marks those columns, whose logits come from the prefix.
    Returns logits at the input positions ``(B, L, V)`` (or the last ``logits_to_keep``) and,
    with ``labels``, the mean next-token loss over the labelled tokens.
    """
    position_ids = prefix.lengths[:, None] + (rest_mask.cumsum(1) - 1).clamp(min=0)
    out = model(
        inputs_embeds=embeds,
        attention_mask=torch.cat([prefix.mask, rest_mask], 1),
        position_ids=position_ids,
        use_cache=True,
        logits_to_keep=logits_to_keep,
        **cache_argument(model, prefix.cache),
    )
    logits = out.logits
    loss = None
    if labels is not None:
        if logits_to_keep:
            raise ValueError("labels need every position's logits: use logits_to_keep=0")
        loss = _next_token_loss(logits, labels, rest_mask, prefix.last_logits)
    if not logits_to_keep and prefix.lead_logits is not None:
        lead = prefix.lead_logits[:, None].to(logits.dtype)
        logits = torch.where(lead_cols[..., None], lead, logits)
    return CausalLMOutputWithPast(loss=loss, logits=logits)


def _next_token_loss(
    logits: torch.Tensor, labels: torch.Tensor, rest_mask: torch.Tensor, last: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of each labelled token given its predecessor's logits: the previous input
    column if that is a real token, else the prefix's last position."""
    rows, cols = (labels != IGNORE).nonzero(as_tuple=True)
    prev = (cols - 1).clamp(min=0)
    from_input = (cols > 0) & (rest_mask[rows, prev] > 0)
    pred = torch.where(from_input[:, None], logits[rows, prev], last[rows].to(logits.dtype))
    return F.cross_entropy(pred.float(), labels[rows, cols])


@torch.no_grad()
def prefill_with_prefix(
    model: PreTrainedModel,
    embeds: torch.Tensor,
    rest_mask: torch.Tensor,
    lead_cols: torch.Tensor,
    prefix: BatchPrefix,
) -> Running:
    """Run left-padded inputs after their cached prefixes and keep the cache: rows ready to
    decode (:class:`~lrpt.decoding.Running`, the first token's logits included)."""
    out = forward_with_prefix(model, embeds, rest_mask, lead_cols, prefix, logits_to_keep=1)
    empty = rest_mask.sum(1) == 0  # only a BOS: the prefix predicts the first token
    last = cast(torch.Tensor, out.logits)[:, -1]  # (B, V); forward_with_prefix sets logits
    logits = torch.where(empty[:, None], prefix.last_logits.to(last.dtype), last)
    mask = torch.cat([prefix.mask, rest_mask], 1)
    position = prefix.lengths + rest_mask.sum(1)  # (B,) the next token's position
    return Running.from_cache(prefix.cache, mask, position, logits)


@torch.no_grad()
def greedy_with_prefix(
    model: PreTrainedModel,
    embeds: torch.Tensor,
    rest_mask: torch.Tensor,
    lead_cols: torch.Tensor,
    prefix: BatchPrefix,
    max_new_tokens: int,
    eos: int | list[int] | None,
    pad_id: int,
) -> torch.Tensor:
    """Greedy decoding of left-padded inputs after cached prefixes (see
    :func:`lrpt.decoding.greedy`). Returns the new tokens ``(B, T)``."""
    running = prefill_with_prefix(model, embeds, rest_mask, lead_cols, prefix)
    return greedy(model, running, max_new_tokens, eos, pad_id)
