"""``idpg``: Instance-Dependent Prompt Generation (Wu et al., NAACL 2022, "IDPG: An
Instance-Dependent Prompt Generation Method"), the S-IDPG-DNN variant LoPA compares against.

Formula: ``P(x) = reshape(MLP(e(x)), n × d)``, MLP = Dropout → Linear(k, h) → tanh →
Linear(h, n·d), where ``e(x)`` (k) is the frozen input encoder's pooled output. Parameters:
``k·h + h + h·n·d + n·d``.

Init and dropout follow the LoPA reference code's IDPG baseline (``IDPGSoftPromptGenerator``):
weights N(0, 0.02) (``layer_down_project.weight.data.normal_(mean=0.0,
std=self.config_initializer_range)``, the same for ``layer_up_project``), the output bias zero
(``self.layer_up_project.bias.data.zero_()``) and dropout on the encoder output at the encoder's
``hidden_dropout_prob`` (``self._dropout = torch.nn.Dropout(dropout_prob)``; 0.1 for the
RoBERTa encoders of the paper and for MiniLM), active in training mode only. The initial prompt
is then a small instance-dependent term around 0, as in the reference. One difference we keep:
the first bias starts at 0 (the reference leaves ``nn.Linear``'s default there), as in
:class:`~lrpt.methods.blocks.MLPHead`, which LoPA shares.

``bias_init = "vocab"`` (our earlier reading, kept to reload and rerun artifacts made with it)
starts the output bias at a vocab-initialised prompt (flattened): the task-level part of the
prompt (LoPA's reading ``P = Z_S + Z_I``) then starts where ``pt``'s prompt does. Artifacts saved
before ``bias_init`` existed were trained with ``"vocab"`` (and recorded their dropout, 0); they
load with it (:attr:`IDPGConfig.legacy_values`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from lrpt.methods.base import (
    InitContext,
    ModelDims,
    PromptMethod,
    TrainingDefaults,
    check_choice,
    check_positive,
    check_probability,
)
from lrpt.methods.blocks import MLPHead, vocab_init

BIAS_INITS = ("zero", "vocab")  # the output bias: zero (the reference) | a vocab prompt


@dataclass(frozen=True)
class IDPGConfig:
    num_tokens: int = 10  # n
    hidden: int = 256  # h
    dropout: float = 0.1  # on the encoder output, before the MLP (the reference: 0.1)
    bias_init: str = "zero"  # the output bias: "zero" (the reference) or "vocab"

    # artifacts saved before this field existed were trained with this value
    legacy_values: ClassVar[dict[str, Any]] = {"bias_init": "vocab"}

    def __post_init__(self) -> None:
        check_positive("num_tokens", self.num_tokens)
        check_positive("hidden", self.hidden)
        check_probability("dropout", self.dropout)
        check_choice("bias_init", self.bias_init, BIAS_INITS)


class IDPG(PromptMethod[IDPGConfig]):
    key = "idpg"
    config_class = IDPGConfig
    static = False
    paper = "IDPG, Wu et al. 2022"
    formula = "reshape(W2 tanh(W1 e + b1) + b2, n × d)"
    param_formula = "k·h + h + h·n·d + n·d"
    training_defaults = TrainingDefaults(lr=1e-2)  # the fair suite's grid choice

    def __init__(self, config: IDPGConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        k = dims.encoder_dim
        assert k is not None  # PromptMethod.__init__ rejects a missing encoder_dim
        out = config.num_tokens * dims.embed_dim
        self.mlp = MLPHead(k, config.hidden, out, dropout=config.dropout)  # e → P (n·d)

    def init_tensors(self, ctx: InitContext) -> None:
        """Weights N(0, 0.02), biases 0; ``bias_init = "vocab"``: the output bias is a vocab
        prompt, drawn before the weights (the draw order of artifacts made with it)."""
        if self.config.bias_init == "zero":
            self.mlp.reset(ctx.generator)
            return
        rows = vocab_init(ctx, self.config.num_tokens)  # (n, d)
        self.mlp.reset(ctx.generator)
        with torch.no_grad():
            self.mlp.up_bias.copy_(rows.flatten())  # (n·d,)

    def prompt(self, batch_size: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        e = self.check_condition(batch_size, condition).to(self.mlp.up_weight.dtype)  # (B, k)
        return self.mlp(e).view(-1, self.config.num_tokens, self.dims.embed_dim)  # (B, n, d)
