"""What a prompt is checked against: its model's and encoder's identity, frozen-tensor hashes."""

from __future__ import annotations

import weakref
from typing import Any, cast

import torch
from transformers import PreTrainedModel

from lrpt.artifact.schema import tensor_spec
from lrpt.family import Family
from lrpt.fingerprint import tensor_fingerprint
from lrpt.methods import PromptMethod
from lrpt.model import InputEncoder, family_of
from lrpt.placement import DTYPES, HALF, dtype_name

# SHA-256 of a weight's little-endian float32 bytes (row-major): ``embedding_sha256`` and the
# ``sha256`` of each frozen tensor in ``prompt.json``
embedding_fingerprint = tensor_fingerprint

# a model's embedding fingerprint by weight tensor, with the tensor's version when it was taken:
# loading many prompts onto one model hashes its embeddings once, not once per prompt
_weight_fingerprints: dict[int, tuple[weakref.ref[torch.Tensor], int, str]] = {}


def weight_fingerprint(weight: torch.Tensor) -> str:
    """:func:`embedding_fingerprint` of a model's weight, memoised until it changes in place."""
    version = weight._version
    known = _weight_fingerprints.get(id(weight))
    if known is None or known[0]() is not weight or known[1] != version:
        for key in [k for k, v in _weight_fingerprints.items() if v[0]() is None]:
            del _weight_fingerprints[key]  # weights that are gone
        known = (weakref.ref(weight), version, embedding_fingerprint(weight))
        _weight_fingerprints[id(weight)] = known
    return known[2]


def identity(
    name: str | None,
    family: Family,
    vocab_size: int,
    hidden_size: int,
    sha: str,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """The ``model`` (or ``encoder``) entry of ``prompt.json``; ``dtype``, the embeddings'
    dtype, is recorded only when it is not float32 (a half-precision copy of the model)."""
    out = {
        "name": name or "",
        "family": family.value,
        "hidden_size": int(hidden_size),
        "vocab_size": int(vocab_size),
        "embedding_sha256": sha,
    }
    if dtype != torch.float32:
        out["dtype"] = dtype_name(dtype)
    return out


def model_identity(model: PreTrainedModel, name: str | None) -> dict[str, Any]:
    """``{name, family, hidden_size, vocab_size, embedding_sha256}`` of ``model`` (and ``dtype``
    if its embeddings are not float32)."""
    weight = embedding_of(model)  # (V, d)
    vocab, hidden = weight.shape
    sha = weight_fingerprint(weight)
    return identity(name, family_of(model), vocab, hidden, sha, weight.dtype)


def embedding_of(model: PreTrainedModel) -> torch.Tensor:
    """The model's input-embedding matrix ``(V, d)``."""
    return cast(torch.Tensor, model.get_input_embeddings().weight)


def stored_dtype(identity: dict[str, Any]) -> torch.dtype:
    """The dtype of the embeddings an identity was taken from (float32 unless recorded)."""
    name = identity.get("dtype", "float32")
    if name not in DTYPES:
        raise ValueError(f"unknown embedding dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[name]


def rounding_dtype(identity: dict[str, Any], model: PreTrainedModel) -> torch.dtype | None:
    """The half-precision dtype the prompt's model had when ``model`` is a finer copy of it (a
    float32 one): frozen state derived from the embeddings is rebuilt rounded to it. Else None."""
    trained = stored_dtype(identity)
    if trained in HALF and embedding_of(model).dtype == torch.float32:
        return trained
    return None


def fingerprint_at(stored: dict[str, Any], model: PreTrainedModel) -> str | None:
    """``model``'s embedding fingerprint at the precision ``stored`` was taken at, to compare
    with ``stored["embedding_sha256"]``: its own on a model of the same dtype; its embeddings
    rounded to the stored half precision on a float32 model (a float32 model matches an
    artifact trained on its bfloat16 copy). None when it cannot be told: the artifact records
    float32 embeddings and ``model`` is a half-precision copy (the float32 values are not in
    it), or the two are different half-precision copies."""
    weight = embedding_of(model)
    trained = stored_dtype(stored)
    if weight.dtype == trained:
        return weight_fingerprint(weight)
    if trained in HALF and weight.dtype == torch.float32:
        return embedding_fingerprint(weight.to(trained))
    return None


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
