"""``residual``: Residual Prompt Tuning (Razdaibiedina et al., 2023, "Residual Prompt Tuning:
Improving Prompt Tuning with Residual Reparameterization"), DPT's baseline.

Formula: ``P' = P + LayerNorm(W2 ReLU(W1 P + b1) + b2)``, applied to each of the ``n`` rows with one
shared MLP; ``P`` (n × d) vocab init, ``W1`` (h × d), ``W2`` (d × h), bottleneck ``h`` = 400.
Parameters: ``n·d + (d·h + h) + (h·d + d) + 2·d``.

Initialisation: ``P`` from the vocabulary; the MLP like PyTorch's default ``nn.Linear`` init (as the
reference code, which builds ``nn.Linear`` layers), drawn from the seeded generator: every weight
and bias ~ ``U(±1/√fan_in)``; LayerNorm weight 1, bias 0 (ε = 1e-5, ``nn.LayerNorm``'s default).
The LayerNorm is the paper's: DPT's account of its baseline, "we follow them to adopt ReLU as
activation function and perform layer normalization (Ba et al., 2016)".

``norm_init`` (an option; the paper's formula stays the default ``"ones"``): a LayerNorm output
with weight 1 has rows of norm √d (24 for SmolLM2's d = 576), about 8× a SmolLM2 token (≈ 2.9),
a scale that suited T5, whose embeddings are larger. ``norm_init = "token"`` starts the
LayerNorm weight at ``t / √d`` (``t``: the mean norm of the model's candidate token embeddings,
:func:`~lrpt.methods.blocks.mean_row_norm`), so the residual term starts at a token's norm. The
weight still trains; the parameter count is the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

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

LAYER_NORM_EPS = 1e-5
NORM_INITS = ("ones", "token")  # LayerNorm weight: 1 (the paper) | a token's norm / √d


@dataclass(frozen=True)
class ResidualConfig:
    num_tokens: int = 100
    hidden: int = 400  # MLP bottleneck h
    norm_init: str = "ones"  # LayerNorm weight: "ones" (the paper) or "token" (a token's norm)

    # artifacts saved before this field existed were trained with this value
    legacy_values: ClassVar[dict[str, Any]] = {"norm_init": "ones"}

    def __post_init__(self) -> None:
        check_positive("num_tokens", self.num_tokens)
        check_positive("hidden", self.hidden)
        check_choice("norm_init", self.norm_init, NORM_INITS)


class ResidualPromptTuning(PromptMethod[ResidualConfig]):
    key = "residual"
    config_class = ResidualConfig
    paper = "Residual PT, Razdaibiedina et al. 2023"
    formula = "P' = P + LayerNorm(W2 ReLU(W1 P + b1) + b2)"
    param_formula = "n·d + (d·h + h) + (h·d + d) + 2·d"
    training_defaults = TrainingDefaults(lr=1e-2)  # the fair suite's grid choice

    def __init__(self, config: ResidualConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        n, h, d = config.num_tokens, config.hidden, dims.embed_dim
        self.prompt_embeddings = nn.Parameter(torch.empty(n, d))  # (n, d)
        self.w1 = nn.Parameter(torch.empty(h, d))  # (h, d)
        self.b1 = nn.Parameter(torch.empty(h))  # (h,)
        self.w2 = nn.Parameter(torch.empty(d, h))  # (d, h)
        self.b2 = nn.Parameter(torch.empty(d))  # (d,)
        self.norm_weight = nn.Parameter(torch.empty(d))  # (d,)
        self.norm_bias = nn.Parameter(torch.empty(d))  # (d,)

    def init_tensors(self, ctx: InitContext) -> None:
        with torch.no_grad():
            self.prompt_embeddings.copy_(vocab_init(ctx, self.config.num_tokens))
            for weight, bias in ((self.w1, self.b1), (self.w2, self.b2)):
                bound = 1 / math.sqrt(weight.shape[1])  # 1/√fan_in
                weight.uniform_(-bound, bound, generator=ctx.generator)
                bias.uniform_(-bound, bound, generator=ctx.generator)
            scale = 1.0
            if self.config.norm_init == "token":
                scale = mean_row_norm(ctx) / math.sqrt(self.dims.embed_dim)
            self.norm_weight.fill_(scale)
            self.norm_bias.zero_()

    def materialise(self) -> torch.Tensor:
        p = self.prompt_embeddings  # (n, d)
        hidden = torch.relu(F.linear(p, self.w1, self.b1))  # (n, h)
        update = F.linear(hidden, self.w2, self.b2)  # (n, d)
        normed = F.layer_norm(update, (update.shape[-1],), self.norm_weight, self.norm_bias,
                              LAYER_NORM_EPS)  # fmt: skip
        return p + normed  # (n, d)
