"""Save a prompted model's trainable tensors and everything needed to rebuild it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from lrpt.artifact.errors import FrozenStateMismatch
from lrpt.artifact.identity import encoder_identity, frozen_specs, frozen_tensors, model_identity
from lrpt.artifact.schema import (
    FORMAT_VERSION,
    JSON_NAME,
    TENSORS_NAME,
    config_dict,
    finite,
    json_bytes,
    plain,
    tensor_specs,
)
from lrpt.fileio import atomic_dir
from lrpt.methods import PromptMethod
from lrpt.model import PromptedModel, build_method


def metadata(
    method: PromptMethod,
    *,
    init_seed: int,
    model: dict[str, Any],
    encoder: dict[str, Any] | None,
    tensors: Mapping[str, torch.Tensor],
    training: dict[str, Any] | None,
) -> dict[str, Any]:
    """The content of ``prompt.json`` (see :mod:`lrpt.artifact`)."""
    return {
        "format_version": FORMAT_VERSION,
        "method": method.key,
        "config": config_dict(method.config),
        "dims": config_dict(method.dims),
        "init_seed": int(init_seed),
        "model": model,
        "encoder": encoder,
        "extra": method.extra_state(),
        "frozen": frozen_specs(method),
        "tensors": tensor_specs(tensors),
        "training": finite(training),
    }


def save_prompt(
    pm: PromptedModel,
    path: str | os.PathLike,
    *,
    model_name: str,
    training: dict[str, Any] | None = None,
    overwrite: bool = False,
    init_seed: int | None = None,
    encoder_name: str | None = None,
    model_revision: str | None = None,
) -> Path:
    """Save ``pm``'s trainable tensors and everything needed to rebuild it as a directory.

    Args:
        pm: the prompted model (its method, head and, if instance-dependent, input encoder).
        path: the artifact directory to create.
        model_name: the base model's key or path, recorded in the artifact.
        training: a JSON-able summary of the training run (or None); NaN and ±inf are
            stored as null.
        overwrite: replace an existing artifact at ``path`` (atomically).
        init_seed: the ``seed`` the method was built with (default: the one ``build_method``
            recorded on it); frozen tensors derived from it are checked to regenerate before
            anything is written.
        encoder_name: the input encoder's key, recorded for instance-dependent methods.
        model_revision: the Hub commit the base model was loaded at, recorded as the model
            identity's ``revision`` (a model from the Hub only).

    Returns:
        ``Path(path)``.

    Raises:
        FileExistsError: ``path`` exists (and not ``overwrite``) or is not an artifact.
        FrozenStateMismatch: the method's frozen tensors do not regenerate from ``init_seed``.
        LrptError: ``training`` or the method's extra state is not plain JSON.
    """
    target = Path(path)
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise _exists(target)
    method = pm.method
    if init_seed is None:
        init_seed = pm.method.init_seed if pm.method.init_seed is not None else 0
    _check_regenerates(pm, init_seed)
    tensors = {
        k: v.detach().to("cpu").contiguous().clone() for k, v in pm.trainable_state_dict().items()
    }
    encoder = None
    if not method.static and pm.encoder is not None:
        encoder = encoder_identity(pm.encoder, encoder_name)
    model = model_identity(pm.model, model_name)
    if model_revision is not None:
        model["revision"] = model_revision
    meta = metadata(
        method,
        init_seed=init_seed,
        model=model,
        encoder=encoder,
        tensors=tensors,
        training=training,
    )
    meta_bytes = json_bytes(meta)
    tensor_bytes = safetensors.torch.save(tensors)
    _check_replaceable(target, overwrite)
    with atomic_dir(target, replace=overwrite) as tmp:
        write_files(tmp, {TENSORS_NAME: tensor_bytes, JSON_NAME: meta_bytes})
    return target


def write_files(directory: Path, files: dict[str, bytes]) -> None:
    """Write and fsync each of ``files`` (name → bytes) inside ``directory``.

    Every file goes through ``lrpt.artifact._write``, looked up when called: the one seam
    through which a failing disk is simulated.
    """
    import lrpt.artifact

    for name, data in files.items():
        lrpt.artifact._write(directory / name, data)


def _exists(target: Path) -> FileExistsError:
    return FileExistsError(f"{str(target)!r} already exists; pass overwrite=True to replace it")


def _check_replaceable(target: Path, overwrite: bool) -> None:
    """Raise ``FileExistsError`` unless ``target`` is absent, or ``overwrite`` and it is an
    existing lrpt artifact or an empty directory."""
    if not (target.exists() or target.is_symlink()):
        return
    if not overwrite:
        raise _exists(target)
    replaceable = (
        target.is_dir()
        and not target.is_symlink()
        and ((target / JSON_NAME).is_file() or not any(target.iterdir()))
    )
    if not replaceable:
        raise FileExistsError(
            f"{str(target)!r} exists and is not an lrpt prompt artifact: refusing to replace it"
        )


def _check_regenerates(pm: PromptedModel, init_seed: int) -> None:
    """Rebuild the method from ``init_seed``; its frozen state must equal ``pm.method``'s."""
    method = pm.method
    if not frozen_tensors(method) and not method.extra_state():
        return
    again = build_method(
        method.key,
        pm.model,
        pm.tokenizer,
        encoder=None if method.static else pm.encoder,
        seed=init_seed,
        **config_dict(method.config),
    )
    have, rebuilt = frozen_specs(method), frozen_specs(again)
    differ = sorted(n for n in have if have[n] != rebuilt.get(n))
    if differ or plain(method.extra_state()) != plain(again.extra_state()):
        raise FrozenStateMismatch(
            f"method {method.key!r}: frozen state {', '.join(differ) or 'extra_state'} does not "
            f"regenerate from init_seed={init_seed}; pass save_prompt(init_seed=...) the seed the "
            "method was built with"
        )
