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
from torch.nn import functional as F

from lrpt.init import vocab_init
from lrpt.methods.base import InitContext, ModelDims, PromptMethod, check_positive

INIT_STD = 0.02  # std of the MLP weights (reference code: the encoder's initializer_range)


def check_dropout(value: float) -> None:
    """Raise ``ValueError`` unless ``value`` is a probability in [0, 1)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {value!r}")


class MLPHead(nn.Module):
    """Dropout → Linear(k, h) → tanh → Linear(h, out), the head LoPA and S-IDPG put on the encoder.

    Allocates only (no RNG); :meth:`reset` initialises weights N(0, ``std``) and biases 0.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.down_weight = nn.Parameter(torch.empty(hidden, in_dim))  # (h, k)
        self.down_bias = nn.Parameter(torch.empty(hidden))  # (h,)
        self.up_weight = nn.Parameter(torch.empty(out_dim, hidden))  # (out, h)
        self.up_bias = nn.Parameter(torch.empty(out_dim))  # (out,)

    def reset(self, generator: torch.Generator, std: float = INIT_STD) -> None:
        with torch.no_grad():
            self.down_weight.normal_(0.0, std, generator=generator)
            self.up_weight.normal_(0.0, std, generator=generator)
            self.down_bias.zero_()
            self.up_bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(F.linear(self.dropout(x), self.down_weight, self.down_bias))  # (B, h)
        return F.linear(hidden, self.up_weight, self.up_bias)  # (B, out)


def checked_condition(
    method: PromptMethod, batch_size: int, condition: torch.Tensor | None
) -> torch.Tensor:
    """``condition`` if it is the ``(batch_size, k)`` encoder output, else ``ValueError``."""
    if condition is None:
        raise ValueError(f"method {method.key!r} is instance-dependent: it needs a condition")
    expected = (batch_size, method.dims.encoder_dim)
    if tuple(condition.shape) != expected:
        raise ValueError(f"condition must have shape {expected}, got {tuple(condition.shape)}")
    return condition


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
        check_dropout(self.dropout)


class LoPA(PromptMethod):
    key = "lopa"
    config_class = LoPAConfig
    static = False
    paper = "LoPA, Jain et al. 2024"
    formula = "Z_S ⊙ sigmoid(MLP_v(e) MLP_u(e)ᵀ)"
    param_formula = "n·d + (k·h + h + h·d·r + d·r) + (k·h + h + h·n·r + n·r)"

    def __init__(self, config: LoPAConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        n, d, k = config.num_tokens, dims.embed_dim, dims.encoder_dim
        h, r = config.hidden, config.rank
        assert k is not None  # PromptMethod.__init__ rejects a missing encoder_dim
        self.prompt_shared = nn.Parameter(torch.empty(n, d))  # (n, d)  Z_S
        self.mlp_u = MLPHead(k, h, d * r, dropout=config.dropout)  # e → u (d·r)
        self.mlp_v = MLPHead(k, h, n * r, dropout=config.dropout)  # e → v (n·r)

    def init_weights(self, ctx: InitContext) -> None:
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
        z_i = self.instance_part(checked_condition(self, batch_size, condition))  # (B, n, d)
        return self.prompt_shared * torch.sigmoid(z_i)  # (B, n, d)
