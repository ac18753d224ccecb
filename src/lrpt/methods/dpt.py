"""``dpt``: Decomposed Prompt Tuning (Xiao et al., 2023, "Decomposed Prompt Tuning via Low-Rank
Reparameterization").

Formula: ``P = A B`` with ``A`` (n × b) and ``B`` (b × d), both trainable (the paper writes the
transpose). Parameters: ``b·(n + d)``; the bottleneck ``b`` is the config field ``rank``.

Initialisation:

* ``uniform`` (default, the reference code): every entry of ``A`` and ``B`` ~ ``U(−0.5, 0.5)``.
* ``normal`` (the paper says "Gaussian" without a standard deviation): ``N(0, σ²)`` with
  ``σ = 1/√12 ≈ 0.2887``, the standard deviation of ``U(−0.5, 0.5)``. The two options then start
  from prompts of the same scale (entry std ``σ²·√b``) and differ only in the shape of the
  distribution; ``σ = 1`` (``torch.randn``) would make the initial prompt 12× larger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lrpt.methods.base import (
    InitContext,
    ModelDims,
    PromptMethod,
    TrainingDefaults,
    check_choice,
    check_positive,
)

INITS = ("uniform", "normal")
UNIFORM_HALF_WIDTH = 0.5  # reference code: U(−0.5, 0.5)
NORMAL_STD = 1 / math.sqrt(12)  # = std of U(−0.5, 0.5)


@dataclass(frozen=True)
class DPTConfig:
    num_tokens: int = 100
    rank: int = 10  # the paper's bottleneck b
    init: str = "uniform"  # uniform (reference code) | normal (paper)

    def __post_init__(self) -> None:
        check_positive("num_tokens", self.num_tokens)
        check_positive("rank", self.rank)
        check_choice("init", self.init, INITS)


class DecomposedPromptTuning(PromptMethod[DPTConfig]):
    key = "dpt"
    config_class = DPTConfig
    paper = "DPT, Xiao et al. 2023"
    formula = "P = A B"
    param_formula = "b·(n + d)"
    training_defaults = TrainingDefaults(lr=5e-2)  # the fair suite's grid choice

    def __init__(self, config: DPTConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        self.A = nn.Parameter(torch.empty(config.num_tokens, config.rank))  # (n, b)
        self.B = nn.Parameter(torch.empty(config.rank, dims.embed_dim))  # (b, d)

    def init_tensors(self, ctx: InitContext) -> None:
        for param in (self.A, self.B):
            if self.config.init == "uniform":
                unit = torch.rand(param.shape, generator=ctx.generator) * 2 - 1  # U[−1, 1)
                values = unit * UNIFORM_HALF_WIDTH
            else:
                values = torch.randn(param.shape, generator=ctx.generator) * NORMAL_STD
            with torch.no_grad():
                param.copy_(values)

    def materialise(self) -> torch.Tensor:
        return self.A @ self.B  # (n, b) @ (b, d) → (n, d)
