"""Artifact sizes on disk: predicted from a method's config alone, or measured."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import torch

from lrpt.artifact.identity import identity
from lrpt.artifact.read import artifact_dir
from lrpt.artifact.save import metadata
from lrpt.artifact.schema import FILES, json_bytes, tensor_specs
from lrpt.family import Family
from lrpt.methods import ModelDims, method_class

_ST_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
}


def _safetensors_size(specs: dict[str, dict[str, Any]]) -> int:
    """Exact size of a safetensors file holding float tensors ``{name: {shape, dtype}}``
    without metadata: 8-byte length + JSON header (space-padded to a multiple of 8) + data."""
    header, offset = {}, 0
    for name in sorted(specs):  # safetensors orders tensors of one dtype by name
        dtype = getattr(torch, specs[name]["dtype"])
        nbytes = math.prod(specs[name]["shape"]) * dtype.itemsize
        header[name] = {
            "dtype": _ST_DTYPES[dtype],
            "shape": specs[name]["shape"],
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    text = json.dumps(header, separators=(",", ":"))
    return 8 + len(text) + (-len(text)) % 8 + offset


def artifact_bytes(
    key: str,
    dims: ModelDims,
    config: Any,
    *,
    model_name: str = "",
    vocab_size: int = 0,
    training: dict[str, Any] | None = None,
) -> int:
    """Bytes on disk (both files) of an artifact of method ``key`` with ``config`` on ``dims``,
    computed without training or a model: exact for that model name, vocab size and training
    summary; a classification head (encoder models) is not included.
    """
    with torch.device("cpu"):
        method = method_class(key)(config, dims)  # uninitialised: only shapes and lengths matter
    tensors = {f"method.{n}": p for n, p in method.named_parameters() if p.requires_grad}
    model = identity(model_name, Family.CAUSAL, vocab_size, dims.embed_dim, "0" * 64)
    encoder = None
    if dims.encoder_dim is not None and not method.static:
        encoder = identity("", Family.ENCODER, 0, dims.encoder_dim, "0" * 64)
    meta = metadata(
        method, init_seed=0, model=model, encoder=encoder, tensors=tensors, training=training
    )
    return len(json_bytes(meta)) + _safetensors_size(tensor_specs(tensors))


def artifact_size(path: str | os.PathLike) -> dict[str, int]:
    """``{file name: bytes}`` of the artifact's files, plus ``total``."""
    root = artifact_dir(path)
    sizes = {name: (root / name).stat().st_size for name in FILES}
    return sizes | {"total": sum(sizes.values())}
