"""The exact input embeddings a prompted causal LM feeds its frozen model, one tensor per row.

An engine that takes prompt embeddings instead of token ids (vLLM's ``prompt_embeds``) runs any
lrpt prompt from these, because every method acts at the input embeddings: the rows are those of
:meth:`lrpt.model.PromptedModel.insert` (the one insertion path) with the padding taken out, so a
row is ``[BOS] + prompt + input`` for every method:

* static prompts (pt, dpt, lopt1, lopt2, ulpt, residual): the prompt's rows after the lead token,
  computed once per :class:`InputEmbeds` (cached per prompt), so every row carries bit-identical
  ``[BOS] + prompt`` rows and an engine's prefix cache can share them;
* DePT and EPT: their static prompt, and the input rows with the method's position-wise update;
* LoPA and IDPG: each input's own prompt from their input encoder (which reads the raw texts).

A row has no position ids: they are ``0 .. T-1``, as the frozen model numbers an unpadded row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lrpt.family import Family
from lrpt.model import PromptedModel, embedding_weight


class InputEmbeds:
    """``InputEmbeds(pm)(rows, texts)`` → one ``(T_i, d)`` tensor per token row (see the module
    docstring); the prompt's tensors are read as they are when this object is made.

    Raises:
        ValueError: ``pm`` is not a causal LM (encoders and seq2seq models have no engine that
            takes prompt embeddings here).
    """

    def __init__(self, pm: PromptedModel) -> None:
        if pm.family != Family.CAUSAL:
            raise ValueError(
                f"prompt embeddings need a causal LM; the model is of family '{pm.family}'"
            )
        self.pm = pm
        self.pad_id = pm.tokenizer.pad_token_id if pm.tokenizer.pad_token_id is not None else 0
        self.static_rows: torch.Tensor | None = None  # (1, n, d): the cached static prompt
        if pm.method.static:
            with torch.no_grad():
                self.static_rows = pm.method.prompt(1).detach()

    @torch.no_grad()
    def __call__(
        self, rows: Sequence[Sequence[int]], texts: Sequence[str] | None = None
    ) -> list[torch.Tensor]:
        """The input embeddings of each token row (special tokens included, as the tokenizer
        gives them); ``texts``: the raw inputs an instance-dependent method's encoder reads
        (default: decoded from the rows)."""
        if not rows:
            return []
        empty = [i for i, row in enumerate(rows) if not row]
        if empty:
            raise ValueError(f"token rows must not be empty; rows {empty} are")
        device = embedding_weight(self.pm.model).device
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: pads first
            ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row) :] = 1
        ins = self.pm.insert(
            ids.to(device), mask.to(device), texts=texts, prompt=self.static_rows
        )  # fmt: skip
        keep = ins.attention_mask.bool()
        return [ins.embeds[i, keep[i]] for i in range(len(rows))]
