"""Rebuild a saved prompt on a model, after checking the model, encoder and frozen state."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from lrpt.artifact.errors import (
    FrozenStateMismatch,
    ModelMismatch,
    ModelRequired,
    ProjectionMismatch,
    TensorMismatch,
)
from lrpt.artifact.identity import (
    embedding_of,
    encoder_identity,
    fingerprint_at,
    frozen_specs,
    model_identity,
    rounding_dtype,
    stored_dtype,
)
from lrpt.artifact.read import read_artifact, read_dims, read_tensors, rebuild_config
from lrpt.artifact.schema import plain, tensor_specs
from lrpt.methods import InitContext, ModelDims, PromptMethod, method_class
from lrpt.model import InputEncoder, PromptedModel, build_method
from lrpt.placement import dtype_name

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("lrpt: %s", message)


# --------------------------------------------------------------------------- checks
def _check_tensors(root: Path, key: str, got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Stored tensor specs ``got`` must equal what the method (and head) build: ``expected``."""
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        raise TensorMismatch(
            f"{str(root)!r}: method {key!r} with this config trains tensors "
            f"{', '.join(expected)}; the artifact is missing {missing} and has unexpected {extra}"
        )
    for name in expected:
        have, want = got[name], expected[name]
        if have["shape"] != want["shape"]:
            raise TensorMismatch(
                f"{str(root)!r}: tensor {name!r} has shape {tuple(have['shape'])}, but method "
                f"{key!r} with this config builds {tuple(want['shape'])}"
            )
        if have["dtype"] != want["dtype"]:
            raise TensorMismatch(
                f"{str(root)!r}: tensor {name!r} has dtype {have['dtype']}, but method {key!r} "
                f"on this model builds {want['dtype']}"
            )


def _identity_diff(stored: dict[str, Any], actual: dict[str, Any], keys: list[str]) -> list[str]:
    return [
        f"{k}: trained on {stored[k]!r}, got {actual[k]!r}" for k in keys if stored[k] != actual[k]
    ]


def _check_model(
    root: Path, meta: dict[str, Any], model: PreTrainedModel, *, model_name: str | None, check: bool
) -> None:
    stored = meta["model"]
    actual = model_identity(model, model_name)
    if actual["hidden_size"] != meta["dims"]["embed_dim"]:
        raise ModelMismatch(
            f"{str(root)!r}: the prompt has embedding size {meta['dims']['embed_dim']}, but the "
            f"model's embeddings have size {actual['hidden_size']}"
        )
    if not check:
        return
    keys = ["family", "hidden_size", "vocab_size"]
    diff = _identity_diff(stored, actual, (["name"] if model_name is not None else []) + keys)
    compared = fingerprint_at(stored, model)
    if compared is None:
        _warn_once(
            f"{str(root)!r} was saved from a {dtype_name(stored_dtype(stored))} copy of model "
            f"{stored['name']!r} and this copy is {dtype_name(embedding_of(model).dtype)}: its "
            "embedding fingerprint cannot be compared (name, family and sizes were)"
        )
    elif compared != stored["embedding_sha256"]:
        at = "" if compared == actual["embedding_sha256"] else f" rounded to {stored['dtype']}"
        diff.append(
            f"embedding_sha256: trained on {stored['embedding_sha256']!r}, got {compared!r}{at}"
        )
    if diff:
        raise ModelMismatch(
            f"{str(root)!r} was trained on model {stored['name']!r}, not this one: "
            f"{'; '.join(diff)} (check_model=False skips this check)"
        )


def _check_encoder(
    root: Path, meta: dict[str, Any], encoder: InputEncoder | None, *, check: bool
) -> None:
    key, k = meta["method"], meta["dims"]["encoder_dim"]
    stored = meta["encoder"] or {}
    if encoder is None:
        raise ModelMismatch(
            f"{str(root)!r}: method {key!r} is instance-dependent: pass encoder= (trained with "
            f"encoder {stored.get('name', '')!r}, hidden size {k})"
        )
    if encoder.dim != k:
        raise ModelMismatch(
            f"{str(root)!r}: method {key!r} was trained with an encoder of hidden size {k}, "
            f"got {encoder.dim}"
        )
    if check and stored:
        diff = _identity_diff(
            stored, encoder_identity(encoder), ["hidden_size", "embedding_sha256"]
        )
        if diff:
            raise ModelMismatch(
                f"{str(root)!r} was trained with input encoder {stored['name']!r}, not this one: "
                f"{'; '.join(diff)} (check_model=False skips this check)"
            )


def _frozen_matches(meta: dict[str, Any], method: PromptMethod) -> bool:
    return plain(method.extra_state()) == meta["extra"] and frozen_specs(method) == meta["frozen"]


def _check_frozen(
    root: Path, meta: dict[str, Any], method: PromptMethod, model: PreTrainedModel | None = None
) -> None:
    """The rebuilt method's extra state and frozen tensors must equal the stored ones."""
    key, stored, extra = meta["method"], meta["extra"], plain(method.extra_state())
    if extra != stored:
        diff = [
            f"{k}: stored {stored.get(k)!r}, regenerated {extra.get(k)!r}"
            for k in sorted(set(stored) | set(extra))
            if stored.get(k) != extra.get(k)
        ]
        raise ProjectionMismatch(
            f"{str(root)!r}: method {key!r} regenerates frozen state that differs from the one "
            f"the prompt was trained with ({'; '.join(diff)}); the prompt would silently differ"
            f"{_precision_hint(meta, model)}"
        )
    have, want = frozen_specs(method), meta["frozen"]
    differ = sorted(n for n in set(have) | set(want) if have.get(n) != want.get(n))
    if differ:
        detail = "; ".join(f"{n}: stored {want.get(n)}, regenerated {have.get(n)}" for n in differ)
        raise FrozenStateMismatch(
            f"{str(root)!r}: method {key!r} regenerates frozen tensor(s) that differ from the "
            f"ones the prompt was trained with ({detail}); the prompt would silently differ"
            f"{_precision_hint(meta, model)}"
        )


def _precision_hint(meta: dict[str, Any], model: PreTrainedModel | None) -> str:
    """Why frozen state may not regenerate on ``model``: another precision than the prompt's
    model (a float32 prompt's state cannot be rebuilt from a half-precision copy)."""
    trained = dtype_name(stored_dtype(meta["model"]))
    have = dtype_name(embedding_of(model).dtype) if model is not None else trained
    if have == trained:
        return ""
    return (
        f"; it was trained on a {trained} copy of the model and this one is {have}: "
        f"load the model in {trained}"
    )


# --------------------------------------------------------------------------- load
def load_prompt(
    path: str | os.PathLike,
    model: PreTrainedModel,
    tokenizer: Any,
    *,
    encoder: InputEncoder | None = None,
    model_name: str | None = None,
    check_model: bool = True,
) -> PromptedModel:
    """Rebuild the prompted model saved at ``path`` on the frozen ``model``.

    Validates the artifact (see :func:`read_artifact`), the model identity (family, hidden and
    vocab size, embedding fingerprint, and ``model_name`` if given; ``check_model=False`` keeps
    only the hidden-size check), the input encoder of instance-dependent methods, the frozen
    state the method regenerates (``extra_state()`` and frozen-tensor fingerprints) and every
    stored tensor's name, shape and dtype; then loads the tensors.

    Raises:
        ArtifactError: one of its subclasses, naming the path and what did not match.
    """
    root = Path(path)
    meta = read_artifact(root)
    tensors = read_tensors(root, meta)
    key = meta["method"]
    static = method_class(key).static
    _check_model(root, meta, model, model_name=model_name, check=check_model)
    if not static:
        _check_encoder(root, meta, encoder, check=check_model)
    method = build_method(
        key,
        model,
        tokenizer,
        encoder=None if static else encoder,
        seed=meta["init_seed"],
        embedding_dtype=rounding_dtype(meta["model"], model),
        **meta["config"],
    )
    _check_frozen(root, meta, method, model)
    pm = PromptedModel(model, tokenizer, method, encoder=None if static else encoder)
    _check_tensors(root, key, tensor_specs(tensors), tensor_specs(pm.trainable_state_dict()))
    pm.load_trainable_state_dict(tensors)
    return pm


def _stand_in_embedding(vocab_size: int, dim: int) -> nn.Embedding:
    """A zero embedding of the base model's shape (no memory beyond one row)."""
    return nn.Embedding.from_pretrained(torch.zeros(1, dim).expand(max(vocab_size, 1), dim))


def _rebuild(
    meta: dict[str, Any],
    config: Any,
    dims: ModelDims,
    embedding: nn.Module,
    tokenizer: Any,
    embedding_dtype: torch.dtype | None = None,
) -> PromptMethod:
    with torch.device("cpu"):
        method = method_class(meta["method"])(config, dims)
    ctx = InitContext(
        embedding=embedding,
        generator=torch.Generator(device="cpu").manual_seed(meta["init_seed"]),
        tokenizer=tokenizer,
        embedding_dtype=embedding_dtype,
    )
    method.init_weights(ctx)
    return method


def load_method(
    path: str | os.PathLike,
    *,
    model: PreTrainedModel | None = None,
    tokenizer: Any = None,
) -> PromptMethod:
    """The artifact's method on CPU with its stored tensors, to materialise or export a prompt
    without serving it (no ``PromptedModel``, no input encoder, head tensors ignored).

    Without ``model``, frozen tensors are regenerated with a stand-in for the base model (a zero
    embedding of its shape) and must match the stored fingerprints: true for methods whose
    frozen state comes from the config alone (e.g. ULPT's seeded projection). Methods whose
    frozen tensors derive from the model's embeddings (e.g. ``lopt2``'s ``X0``) raise
    :class:`ModelRequired`; pass ``model`` (checked against the stored identity) to rebuild them.

    Raises:
        ModelRequired: the frozen state needs the base model and none was given.
        ArtifactError: any other mismatch (see :func:`load_prompt`).
    """
    root = Path(path)
    meta = read_artifact(root)
    tensors = read_tensors(root, meta)
    key, config, dims = meta["method"], rebuild_config(root, meta), read_dims(root, meta)
    if model is not None:
        _check_model(root, meta, model, model_name=None, check=True)
        rounding = rounding_dtype(meta["model"], model)
        method = _rebuild(meta, config, dims, model.get_input_embeddings(), tokenizer, rounding)
        _check_frozen(root, meta, method, model)
    elif not meta["frozen"] and not meta["extra"]:
        with torch.device("cpu"):
            method = method_class(key)(config, dims)  # every tensor is loaded below
    else:
        method = _rebuild_offline(root, meta, config, dims)
    own = {f"method.{n}": p for n, p in method.named_parameters() if p.requires_grad}
    stored = {n: t for n, t in tensors.items() if not n.startswith("head.")}
    _check_tensors(root, key, tensor_specs(stored), tensor_specs(own))
    with torch.no_grad():
        for name, param in own.items():
            param.copy_(stored[name])
    return method.eval()


def _rebuild_offline(
    root: Path, meta: dict[str, Any], config: Any, dims: ModelDims
) -> PromptMethod:
    stand_in = _stand_in_embedding(meta["model"]["vocab_size"], dims.embed_dim)
    try:
        method = _rebuild(meta, config, dims, stand_in, tokenizer=None)
    except Exception:  # initialisation needs the real model (e.g. its tokenizer or embeddings)
        method = None
    if method is None or not _frozen_matches(meta, method):
        raise ModelRequired(
            f"{str(root)!r}: the frozen state of method {meta['method']!r} "
            f"({', '.join(meta['frozen']) or 'extra_state'}) derives from the base model "
            f"{meta['model']['name']!r}: load it with the model"
        )
    return method
