"""Trainable-parameter accounting of a method configuration, without loading any weights."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from lrpt.artifact import artifact_bytes
from lrpt.methods import ModelDims, make_config, method_class


def describe(
    key: str, embed_dim: int, encoder_dim: int | None = None, **options: Any
) -> dict[str, Any]:
    """Build method ``key`` on the meta device and report its trainable tensors.

    Returns ``{"method", "config", "dims", "trainable_params", "tensors": {name: shape},
    "artifact_bytes"}`` (the size of a saved prompt artifact, see :func:`artifact_bytes`).
    """
    cls = method_class(key)
    config = make_config(key, **options)
    dims = ModelDims(embed_dim=embed_dim, encoder_dim=encoder_dim)
    with torch.device("meta"):
        method = cls(config, dims)
    tensors = method.trainable_tensors()
    return {
        "method": key,
        "config": dataclasses.asdict(config),
        "dims": dataclasses.asdict(dims),
        "trainable_params": method.num_trainable(),
        "tensors": {name: list(shape) for name, shape in tensors.items()},
        "artifact_bytes": artifact_bytes(key, dims, config),
    }
