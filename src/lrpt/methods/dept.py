"""``dept``: Decomposed Prompt Tuning (Shi & Lipani, ICLR 2024, "DePT: Decomposed Prompt Tuning
for Parameter-Efficient Fine-tuning"), the baseline EPT builds on.

Formula: a short prompt ``P_s`` (s × d) is inserted before the input, and the input token embeddings
get a position-wise low-rank update

    E'[i] = E[i] + (α/√r)·(A B)[i]    for input position i < m,

with ``A`` (m × r) and ``B`` (r × d). Parameters: ``s·d + r·(m + d)``.

Init (reference code): ``P_s`` vocab init, ``A`` Kaiming-uniform (a=√5, fan-in r, as torch computes
it for an (m, r) tensor), ``B`` zeros, so the update starts at exactly zero; α = 8.

Position ``i`` is the token's index inside its own unpadded input (see
:meth:`lrpt.model.PromptedModel._input_positions`): pads, the BOS/CLS lead token and target tokens
get no update, nor do positions ``≥ m`` (the reference pads every input to ``m`` and updates pads
too; ours does not depend on the batch's padding side or length).

Two learning rates (``param_groups``): the prompt trains at the main ``lr`` (the papers use
0.3–0.5), the low-rank pair at ``lowrank_lr``. Defaults ``lr`` 1e-2 and ``lowrank_lr`` 5e-4: the
fair suite's grid choice (see :class:`~lrpt.methods.base.TrainingDefaults`); 5e-4 is also the
middle of both grids searched by the papers (DePT {5e-4, 5e-3, 3e-1}, EPT {1e-4, 5e-4, 5e-3}).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lrpt.methods.base import (
    InitContext,
    ModelDims,
    PromptMethod,
    TrainingDefaults,
    check_nonneg_float,
    check_positive,
    check_positive_float,
)
from lrpt.methods.blocks import rows_at, two_rate_groups, vocab_init


@dataclass(frozen=True)
class DePTConfig:
    num_tokens: int = 60  # s, the short prompt's length
    rank: int = 30  # r
    max_length: int = 256  # m, input positions that get an update
    alpha: float = 8.0  # the update is scaled by alpha / √rank
    lowrank_lr: float = 5e-4  # learning rate of A and B (the prompt uses the main lr)

    def __post_init__(self) -> None:
        check_positive("num_tokens", self.num_tokens)
        check_positive("rank", self.rank)
        check_positive("max_length", self.max_length)
        check_nonneg_float("alpha", self.alpha)
        check_positive_float("lowrank_lr", self.lowrank_lr)


class DePT(PromptMethod[DePTConfig]):
    key = "dept"
    config_class = DePTConfig
    paper = "DePT, Shi & Lipani 2024"
    formula = "P_s; E'[i] = E[i] + (α/√r)·(A B)[i], i < m"
    param_formula = "s·d + r·(m + d)"
    training_defaults = TrainingDefaults(lr=1e-2)  # the fair suite's grid choice

    def __init__(self, config: DePTConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        d, r, m = dims.embed_dim, config.rank, config.max_length
        self.prompt_embeddings = nn.Parameter(torch.empty(config.num_tokens, d))  # (s, d)
        self.lowrank_a = nn.Parameter(torch.empty(m, r))  # (m, r)
        self.lowrank_b = nn.Parameter(torch.empty(r, d))  # (r, d)

    def init_tensors(self, ctx: InitContext) -> None:
        rows = vocab_init(ctx, self.config.num_tokens)
        with torch.no_grad():
            self.prompt_embeddings.copy_(rows)
            nn.init.kaiming_uniform_(self.lowrank_a, a=math.sqrt(5), generator=ctx.generator)
            nn.init.zeros_(self.lowrank_b)

    @property
    def scale(self) -> float:
        """The factor of ``A B`` in the input update: α/√r."""
        return float(self.config.alpha) / math.sqrt(self.config.rank)

    def update_matrix(self) -> torch.Tensor:
        """The scaled low-rank update of all ``m`` input positions."""
        return self.scale * (self.lowrank_a @ self.lowrank_b)  # (m, d)

    def input_update(self, positions: torch.Tensor) -> torch.Tensor:
        return rows_at(self.update_matrix(), positions)  # (B, L, d)

    def materialise(self) -> torch.Tensor:
        return self.prompt_embeddings  # (s, d)

    def lowrank_parameters(self) -> list[nn.Parameter]:
        """The low-rank pair, trained at ``lowrank_lr``."""
        return [self.lowrank_a, self.lowrank_b]

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The prompt at ``lr``; ``A``, ``B`` at ``lowrank_lr``."""
        return two_rate_groups(self, self.lowrank_parameters(), lr, self.config.lowrank_lr)
