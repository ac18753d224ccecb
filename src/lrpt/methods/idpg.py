"""``idpg``: Instance-Dependent Prompt Generation (Wu et al., NAACL 2022, "IDPG: An
Instance-Dependent Prompt Generation Method"), the S-IDPG-DNN variant LoPA compares against.

Formula: ``P(x) = reshape(MLP(e(x)), n × d)``, MLP = Linear(k, h) → tanh → Linear(h, n·d), where
``e(x)`` (k) is the frozen input encoder's pooled output. Parameters: ``k·h + h + h·n·d + n·d``.

Init (our choice): weights N(0, 0.02) and the first bias 0, as in the LoPA reference code, but the
output bias is a vocab-initialised prompt (flattened) instead of 0. The reference's zero bias makes
the initial prompt ≈ 0, and no method may start from an (almost) all-zero prompt; with our bias the
initial prompt is a vocab prompt plus a small instance-dependent term. The bias is the task-level
part of the prompt (LoPA's reading: ``P = Z_S + Z_I``).

Dropout on the encoder output is an option (default 0, as the formula above; the LoPA reference
code's IDPG baseline uses 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
class IDPGConfig:
    num_tokens: int = 10  # n
    hidden: int = 256  # h
    dropout: float = 0.0  # on the encoder output, before the MLP

    def __post_init__(self) -> None:
        check_positive("num_tokens", self.num_tokens)
        check_positive("hidden", self.hidden)
        check_probability("dropout", self.dropout)


class IDPG(PromptMethod[IDPGConfig]):
    key = "idpg"
    config_class = IDPGConfig
    static = False
    paper = "IDPG, Wu et al. 2022"
    formula = "reshape(W2 tanh(W1 e + b1) + b2, n × d)"
    param_formula = "k·h + h + h·n·d + n·d"
    training_defaults = TrainingDefaults(lr=1e-3)

    def __init__(self, config: IDPGConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        k = dims.encoder_dim
        assert k is not None  # PromptMethod.__init__ rejects a missing encoder_dim
        out = config.num_tokens * dims.embed_dim
        self.mlp = MLPHead(k, config.hidden, out, dropout=config.dropout)  # e → P (n·d)

    def init_tensors(self, ctx: InitContext) -> None:
        rows = vocab_init(ctx, self.config.num_tokens)  # (n, d)
        self.mlp.reset(ctx.generator)
        with torch.no_grad():
            self.mlp.up_bias.copy_(rows.flatten())  # (n·d,)

    def prompt(self, batch_size: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        e = self.check_condition(batch_size, condition).to(self.mlp.up_weight.dtype)  # (B, k)
        return self.mlp(e).view(-1, self.config.num_tokens, self.dims.embed_dim)  # (B, n, d)
