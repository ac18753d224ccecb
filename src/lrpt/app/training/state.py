"""A training run: what it uses (:class:`Run`) and what changes as it trains (:class:`RunState`).

The loop (:mod:`~lrpt.app.training.loop`) advances a :class:`RunState`; a checkpoint
(:mod:`~lrpt.app.training.checkpoint`) saves it; the results (:mod:`~lrpt.app.training.results`)
report it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lrpt.app.data.examples import TaskData
from lrpt.app.data.objectives import Objective
from lrpt.app.train_config import TrainConfig
from lrpt.app.training.distributed import SINGLE, Dist
from lrpt.model import PromptedModel, embedding_weight


@dataclass
class Run:
    """Everything a training run uses.

    ``model``: ``name`` (the key or local path it was loaded from), ``family`` and ``encoder``
    (the input encoder's key, or None). ``init_seed``: the seed the method was built with
    (default: the training seed). ``dist``: this process's rank in a distributed run.
    """

    pm: PromptedModel
    objective: Objective
    task: TaskData
    cfg: TrainConfig
    out: Path
    model: dict[str, Any]
    init_seed: int | None = None
    dist: Dist = SINGLE


@dataclass
class RunState:
    """What changes while training; saved in every checkpoint."""

    step: int = 0
    position: int = 0  # training examples consumed (the data order is a function of it)
    losses: list[float] = field(default_factory=list)  # training loss per step
    history: list[dict[str, Any]] = field(default_factory=list)  # validation evaluations
    best: dict[str, Any] | None = None  # {"metric", "value", "step"}
    best_tensors: dict[str, torch.Tensor] | None = None
    bad_evals: int = 0  # evaluations since the best one
    stopped_early: bool = False
    train_seconds: float = 0.0  # optimizer steps only
    validation_seconds: float = 0.0
    step_peak_mb: float | None = None  # the most memory a step added (see memory.StepMemory)
    skipped_steps: int = 0  # float16: steps the loss scaler skipped for non-finite gradients


def base_dtype(pm: PromptedModel) -> torch.dtype:
    """The frozen model's dtype (its input embeddings')."""
    return embedding_weight(pm.model).dtype


def base_device(pm: PromptedModel) -> torch.device:
    """The frozen model's device (its input embeddings')."""
    return embedding_weight(pm.model).device
