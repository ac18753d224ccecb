"""``lopt1``: LoPT-1 (Guo et al., 2024, "LoPT: Low-Rank Prompt Tuning for Parameter Efficient
Language Models").

Formula: ``P = U V`` with ``U`` (n × r) and ``V`` (r × d), both trainable. Parameters:
``r·(n + d)``. The algebra is ``dpt``'s; the defaults are the paper's best region (n = 20, r = 5).

Initialisation (the paper is silent; our choice): the best rank-``r`` approximation of a
vocab-initialised prompt ``X0`` (n × d), from its truncated SVD ``X0 ≈ U_r Σ_r V_rᵀ``:
``U = U_r √Σ_r``, ``V = √Σ_r V_rᵀ`` (computed in float64). ``r`` must not exceed ``min(n, d)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lrpt.methods.base import InitContext, ModelDims, PromptMethod, TrainingDefaults, check_positive
from lrpt.methods.blocks import svd_factors, vocab_init


@dataclass(frozen=True)
class LoPT1Config:
    num_tokens: int = 20
    rank: int = 5

    def __post_init__(self) -> None:
        check_positive("num_tokens", self.num_tokens)
        check_positive("rank", self.rank)
        if self.rank > self.num_tokens:
            raise ValueError(
                f"rank must be ≤ num_tokens ({self.num_tokens}) for the SVD init, got {self.rank}"
            )


class LoPT1(PromptMethod[LoPT1Config]):
    key = "lopt1"
    config_class = LoPT1Config
    paper = "LoPT-1, Guo et al. 2024"
    formula = "P = U V"
    param_formula = "r·(n + d)"
    training_defaults = TrainingDefaults(lr=3e-2)  # the fair suite's grid choice

    def __init__(self, config: LoPT1Config, dims: ModelDims) -> None:
        super().__init__(config, dims)
        if config.rank > dims.embed_dim:
            raise ValueError(f"rank must be ≤ embed_dim ({dims.embed_dim}), got {config.rank}")
        self.U = nn.Parameter(torch.empty(config.num_tokens, config.rank))  # (n, r)
        self.V = nn.Parameter(torch.empty(config.rank, dims.embed_dim))  # (r, d)

    def init_tensors(self, ctx: InitContext) -> None:
        x0 = vocab_init(ctx, self.config.num_tokens)  # (n, d)
        left, right = svd_factors(x0, self.config.rank)
        with torch.no_grad():
            self.U.copy_(left)
            self.V.copy_(right)

    def materialise(self) -> torch.Tensor:
        return self.U @ self.V  # (n, r) @ (r, d) → (n, d)
