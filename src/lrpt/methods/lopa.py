"""``lopa``: Low-Rank Prompt Adaptation (Jain et al., NeurIPS 2024, "Prompt Tuning Strikes Back:
Customizing Foundation Models with Low-Rank Prompt Adaptation"); instance-dependent.

Formula: ``P(x) = Z_S ⊙ sigmoid(Z_I(x))`` with a shared ``Z_S`` (n × d) and an instance part
``Z_I(x) = v(x) u(x)ᵀ`` (n × d) of rank r, where ``u = MLP_u(e(x))`` reshaped d × r and
``v = MLP_v(e(x))`` reshaped n × r; ``e(x)`` (k) is the frozen input encoder's pooled output.
Each MLP is Dropout → Linear(k, h) → tanh → Linear(h, out).

Parameters: ``n·d + (k·h + h + h·d·r + d·r) + (k·h + h + h·n·r + n·r)``.

Init: ``Z_S`` vocab init; MLP weights N(0, 0.02), biases 0 (so ``Z_I ≈ 0`` and the initial
prompt is ≈ ``Z_S / 2``). Dropout 0.1: the reference code uses the encoder's
``hidden_dropout_prob``, 0.1 for the RoBERTa/CodeSage encoders of the paper (the paper is silent).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lrpt.methods.base import (
    InitContext,
    ModelDims,
    PromptMethod,
    TrainingDefaults,
    check_positive,
    check_probability,
)
from lrpt.methods.blocks import MLPHead, vocab_init


@dataclass(frozen=True)
class LoPAConfig:
    num_tokens: int = 10  # n
    hidden: int = 256  # h, the MLPs' hidden width
    rank: int = 4  # r of Z_I
    dropout: float = 0.1  # on the encoder output, before each MLP

    def __post_init__(self) -> None:
        check_positive("num_tokens", self.num_tokens)
        check_positive("hidden", self.hidden)
        check_positive("rank", self.rank)
        check_probability("dropout", self.dropout)


class LoPA(PromptMethod[LoPAConfig]):
    key = "lopa"
    config_class = LoPAConfig
    static = False
    paper = "LoPA, Jain et al. 2024"
    formula = "Z_S ⊙ sigmoid(MLP_v(e) MLP_u(e)ᵀ)"
    param_formula = "n·d + (k·h + h + h·d·r + d·r) + (k·h + h + h·n·r + n·r)"
    training_defaults = TrainingDefaults(lr=1e-3)  # the fair suite's grid choice

    def __init__(self, config: LoPAConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        n, d, k = config.num_tokens, dims.embed_dim, dims.encoder_dim
        h, r = config.hidden, config.rank
        assert k is not None  # PromptMethod.__init__ rejects a missing encoder_dim
        self.prompt_shared = nn.Parameter(torch.empty(n, d))  # (n, d)  Z_S
        self.mlp_u = MLPHead(k, h, d * r, dropout=config.dropout)  # e → u (d·r)
        self.mlp_v = MLPHead(k, h, n * r, dropout=config.dropout)  # e → v (n·r)

    def init_tensors(self, ctx: InitContext) -> None:
        rows = vocab_init(ctx, self.config.num_tokens)
        with torch.no_grad():
            self.prompt_shared.copy_(rows)
        self.mlp_u.reset(ctx.generator)
        self.mlp_v.reset(ctx.generator)

    def instance_part(self, condition: torch.Tensor) -> torch.Tensor:
        """``Z_I = v uᵀ`` for ``condition (B, k)``."""
        n, d, r = self.config.num_tokens, self.dims.embed_dim, self.config.rank
        e = condition.to(self.prompt_shared.dtype)  # (B, k)
        u = self.mlp_u(e).view(-1, d, r)  # (B, d, r)
        v = self.mlp_v(e).view(-1, n, r)  # (B, n, r)
        return v @ u.transpose(1, 2)  # (B, n, d)

    def prompt(self, batch_size: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        z_i = self.instance_part(self.check_condition(batch_size, condition))  # (B, n, d)
        return self.prompt_shared * torch.sigmoid(z_i)  # (B, n, d)
