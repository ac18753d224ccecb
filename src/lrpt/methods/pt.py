"""``pt``: vanilla prompt tuning (Lester et al., 2021, "The Power of Scale for Parameter-Efficient
Prompt Tuning"), the baseline of every other method.

Formula: ``P`` (n × d) is trained directly. Parameters: ``n·d``.
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
    check_choice,
    check_positive,
)
from lrpt.methods.blocks import random_init, text_init, vocab_init

INITS = ("vocab", "text", "random")


@dataclass(frozen=True)
class PTConfig:
    num_tokens: int = 100
    init: str = "vocab"  # vocab | text | random
    init_text: str = ""  # used by init="text"

    def __post_init__(self) -> None:
        check_positive("num_tokens", self.num_tokens)
        check_choice("init", self.init, INITS)
        if self.init == "text" and not self.init_text:
            raise ValueError("init 'text' needs a non-empty init_text")


class PromptTuning(PromptMethod[PTConfig]):
    key = "pt"
    config_class = PTConfig
    paper = "Prompt tuning, Lester et al. 2021"
    formula = "P"
    param_formula = "n·d"
    training_defaults = TrainingDefaults(lr=1e-2)  # the fair suite's grid choice

    def __init__(self, config: PTConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        self.prompt_embeddings = nn.Parameter(
            torch.empty(config.num_tokens, dims.embed_dim)
        )  # (n, d)

    def init_tensors(self, ctx: InitContext) -> None:
        n = self.config.num_tokens
        if self.config.init == "vocab":
            rows = vocab_init(ctx, n)
        elif self.config.init == "text":
            rows = text_init(ctx, self.config.init_text, n)
        else:
            rows = random_init(ctx, n)
        with torch.no_grad():
            self.prompt_embeddings.copy_(rows)

    def materialise(self) -> torch.Tensor:
        return self.prompt_embeddings  # (n, d)
