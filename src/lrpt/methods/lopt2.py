"""``lopt2``: LoPT-2 (Guo et al., 2024, "LoPT: Low-Rank Prompt Tuning for Parameter Efficient
Language Models").

Formula: ``P = σ(X0 U) V`` with ``X0`` (n × d) a frozen vocab-initialised prompt, ``U`` (d × r) and
``V`` (r × d) trainable. Parameters: ``2·r·d`` (independent of ``n``).

σ (the paper is silent; our choice): ``tanh`` by default, ``relu`` or ``gelu`` as options.

Initialisation (our choice): ``U`` Xavier-uniform; ``V`` Xavier-uniform, then rescaled so that the
initial prompt's mean row norm equals the mean row norm of the model's token embeddings, taken
over the tokens vocab init draws from (the first 5,000 ids, special tokens removed:
:func:`lrpt.methods.blocks.mean_row_norm`), i.e. the rows ``X0`` is made of; rare tokens are left
out.
``X0`` is a non-persistent buffer: not trained, counted or saved (not even in ``state_dict()``);
it is rebuilt by vocab init from the init seed, and :meth:`LoPT2.extra_state` records its
SHA-256 fingerprint so a rebuild that differs is detected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lrpt.methods.base import (
    InitContext,
    ModelDims,
    PromptMethod,
    TrainingDefaults,
    check_choice,
    check_positive,
)
from lrpt.methods.blocks import mean_row_norm, vocab_init
from lrpt.projection import projection_fingerprint

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": F.gelu,
}


@dataclass(frozen=True)
class LoPT2Config:
    num_tokens: int = 20
    rank: int = 5
    activation: str = "tanh"  # tanh | relu | gelu

    def __post_init__(self) -> None:
        check_positive("num_tokens", self.num_tokens)
        check_positive("rank", self.rank)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))


class LoPT2(PromptMethod[LoPT2Config]):
    key = "lopt2"
    config_class = LoPT2Config
    paper = "LoPT-2, Guo et al. 2024"
    formula = "P = σ(X0 U) V"
    param_formula = "2·r·d"
    training_defaults = TrainingDefaults(lr=3e-2)  # the fair suite's grid choice

    X0: torch.Tensor  # (n, d) frozen buffer, rebuilt from the init seed

    def __init__(self, config: LoPT2Config, dims: ModelDims) -> None:
        super().__init__(config, dims)
        n, r, d = config.num_tokens, config.rank, dims.embed_dim
        self.register_buffer("X0", torch.empty(n, d), persistent=False)  # (n, d) frozen
        self.U = nn.Parameter(torch.empty(d, r))  # (d, r)
        self.V = nn.Parameter(torch.empty(r, d))  # (r, d)

    def init_tensors(self, ctx: InitContext) -> None:
        with torch.no_grad():
            self.X0.copy_(vocab_init(ctx, self.config.num_tokens))
            nn.init.xavier_uniform_(self.U, generator=ctx.generator)
            nn.init.xavier_uniform_(self.V, generator=ctx.generator)
            current = float(self.materialise().norm(dim=1).mean())
            if not math.isfinite(current) or current == 0.0:
                raise ValueError(
                    f"the initial LoPT-2 prompt has mean row norm {current}; "
                    f"try another seed or activation (got {self.config.activation!r})"
                )
            self.V.mul_(mean_row_norm(ctx) / current)

    def materialise(self) -> torch.Tensor:
        hidden = ACTIVATIONS[self.config.activation](self.X0 @ self.U)  # (n, r)
        return hidden @ self.V  # (n, r) @ (r, d) → (n, d)

    def extra_state(self) -> dict[str, Any]:
        return {"x0_sha256": projection_fingerprint(self.X0)}
