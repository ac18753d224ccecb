"""Batched, forward-only evaluation of a prompted model, or of the plain frozen model (zero-shot).

Evaluation runs under ``torch.inference_mode()`` in eval mode, on batches of examples sorted by
length (less padding; the predictions are returned in the original order). A capped evaluation
set is a seeded sample (seed 0, independent of the training seed), so every run of a task is
compared on the same examples. In a distributed run the batches (the single-process batches,
unchanged) are dealt round-robin to the ranks and the predictions gathered on every rank: the
metrics are those of one process.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, TypedDict, Unpack

import torch
from torch import nn
from tqdm import tqdm
from transformers import PreTrainedModel

from lrpt.app.data.examples import Example
from lrpt.app.data.objectives import Objective, Runnable
from lrpt.app.training.distributed import SINGLE, Dist
from lrpt.family import Family

SUBSET_SEED = 0


class Unprompted(nn.Module):
    """The frozen model called like a :class:`~lrpt.PromptedModel`, without a prompt.

    Runs the same templated inputs as the prompted model, for the zero-shot baseline. Causal
    position ids are computed from the attention mask, so left padding is handled as in
    ``PromptedModel``; ``generate`` returns only the new tokens.
    """

    model: Any  # a transformers model; its generate comes from GenerationMixin

    def __init__(self, model: PreTrainedModel, family: str) -> None:
        super().__init__()
        if family == Family.ENCODER:
            raise ValueError("an encoder classifier has no zero-shot baseline (its head is new)")
        self.model = model
        self.family = family

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        texts: Sequence[str] | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> Any:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.family == Family.CAUSAL:
            kwargs["position_ids"] = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
            if logits_to_keep:
                kwargs["logits_to_keep"] = logits_to_keep
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs
        )

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        texts: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return out[:, input_ids.shape[1] :] if self.family == Family.CAUSAL else out


def subset(examples: Sequence[Example], limit: int | None) -> list[Example]:
    """At most ``limit`` examples: a seeded sample in the original order (all if ``None``)."""
    if limit is None or limit >= len(examples):
        return list(examples)
    if limit < 1:
        raise ValueError(f"an evaluation limit must be ≥ 1, got {limit}")
    keep = sorted(random.Random(SUBSET_SEED).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


@torch.inference_mode()
def predict(
    model: Runnable,
    objective: Objective,
    examples: Sequence[Example],
    *,
    batch_size: int = 64,
    desc: str | None = None,
    dist: Dist = SINGLE,
) -> list[Any]:
    """The objective's prediction for each example (label index, value or −1), in order
    (``dist``: this rank predicts every ``world``-th batch; all ranks get every prediction)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be ≥ 1, got {batch_size}")
    model.eval()  # the trainer puts the method back in training mode after evaluating
    order = sorted(range(len(examples)), key=lambda i: -len(_length_key(examples[i])))
    preds: list[Any] = [None] * len(examples)
    starts = range(0, len(order), batch_size)[dist.rank :: dist.world]
    bar = tqdm(starts, desc=desc, leave=False, disable=desc is None, unit="batch")
    mine: list[tuple[int, Any]] = []
    for start in bar:
        index = order[start : start + batch_size]
        batch = objective.collate([examples[i] for i in index], golds=False)
        mine.extend(zip(index, objective.predict(model, batch), strict=True))
    for i, pred in dist.gather(mine):
        preds[i] = pred
    return preds


def _length_key(example: Example) -> str:
    return example.text + (example.text_pair or "")


class Batching(TypedDict, total=False):
    """:func:`predict`'s options, which :func:`evaluate` passes on."""

    batch_size: int
    desc: str | None
    dist: Dist


def evaluate(
    model: Runnable, objective: Objective, examples: Sequence[Example], **options: Unpack[Batching]
) -> dict[str, float]:
    """Every metric of the task on ``examples`` (see :meth:`TaskSpec.metrics`) from
    :func:`predict`'s predictions (``options``: its batch size, progress label and ranks)."""
    if not examples:
        raise ValueError("cannot evaluate on zero examples")
    preds = predict(model, objective, examples, **options)
    golds = [objective.spec.gold(ex) for ex in examples]
    return objective.spec.metrics(preds, golds)
