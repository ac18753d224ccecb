"""What a prompt is checked against: its model's and encoder's identity, frozen-tensor hashes."""

from __future__ import annotations

from typing import Any, cast

import torch
from transformers import PreTrainedModel

from lrpt.artifact.schema import tensor_spec
from lrpt.family import Family
from lrpt.fingerprint import tensor_fingerprint
from lrpt.methods import PromptMethod
from lrpt.model import InputEncoder, family_of

# SHA-256 of a weight's little-endian float32 bytes (row-major): ``embedding_sha256`` and the
# ``sha256`` of each frozen tensor in ``prompt.json``
embedding_fingerprint = tensor_fingerprint


def identity(
    name: str | None, family: Family, vocab_size: int, hidden_size: int, sha: str
) -> dict[str, Any]:
    """The ``model`` (or ``encoder``) entry of ``prompt.json``."""
    return {
        "name": name or "",
        "family": family.value,
        "hidden_size": int(hidden_size),
        "vocab_size": int(vocab_size),
        "embedding_sha256": sha,
    }


def model_identity(model: PreTrainedModel, name: str | None) -> dict[str, Any]:
    """``{name, family, hidden_size, vocab_size, embedding_sha256}`` of ``model``."""
    weight = cast(torch.Tensor, model.get_input_embeddings().weight)  # (V, d)
    vocab, hidden = weight.shape
    return identity(name, family_of(model), vocab, hidden, embedding_fingerprint(weight))


def encoder_identity(encoder: InputEncoder, name: str | None = None) -> dict[str, Any]:
    """The identity of an input encoder's model (name defaults to its ``name_or_path``)."""
    name = name or getattr(encoder.model.config, "name_or_path", "") or ""
    return model_identity(encoder.model, name)


def frozen_tensors(method: PromptMethod) -> dict[str, torch.Tensor]:
    """The method's tensors that do not train (buffers, frozen parameters): never stored."""
    frozen = dict(method.named_buffers())
    frozen |= {n: p for n, p in method.named_parameters() if not p.requires_grad}
    return frozen


def frozen_specs(method: PromptMethod) -> dict[str, dict[str, Any]]:
    """``{name: {shape, dtype, sha256}}`` of :func:`frozen_tensors` (float32 bytes hashed)."""
    return {
        name: tensor_spec(t) | {"sha256": embedding_fingerprint(t)}
        for name, t in sorted(frozen_tensors(method).items())
    }
