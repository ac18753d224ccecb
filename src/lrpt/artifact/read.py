"""Read an artifact's files and check their structure, before any model is involved."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from lrpt.artifact.errors import (
    ArtifactNotFound,
    ConfigMismatch,
    CorruptArtifact,
    FormatVersionError,
    NotAnArtifact,
    UnknownMethodError,
)
from lrpt.artifact.schema import (
    FILES,
    FORMAT_VERSION,
    IDENTITY_KEYS,
    JSON_NAME,
    OPTIONAL_IDENTITY_KEYS,
    TENSORS_NAME,
    TOP_KEYS,
    tensor_specs,
)
from lrpt.methods import (
    METHODS,
    ModelDims,
    make_config,
    method_class,
    unknown_method,
    with_legacy_values,
)
from lrpt.methods.base import config_fields


def artifact_dir(path: str | os.PathLike) -> Path:
    """``path`` as a directory holding both files of an artifact."""
    root = Path(path)
    if not root.exists():
        raise ArtifactNotFound(f"no prompt artifact at {str(root)!r}: no such file or directory")
    if not root.is_dir():
        raise NotAnArtifact(f"{str(root)!r} is a file, not a prompt artifact directory")
    if not (root / JSON_NAME).is_file():
        raise NotAnArtifact(
            f"{str(root)!r} is not a prompt artifact: it has no {JSON_NAME} "
            f"(an artifact holds {' and '.join(FILES)})"
        )
    if not (root / TENSORS_NAME).is_file():
        raise CorruptArtifact(f"{str(root)!r}: {TENSORS_NAME} is missing")
    return root


def _load_json(root: Path) -> dict[str, Any]:
    try:
        meta = json.loads((root / JSON_NAME).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptArtifact(f"{str(root / JSON_NAME)!r} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise CorruptArtifact(f"{str(root / JSON_NAME)!r} must hold a JSON object")
    return meta


def _check_types(
    where: str, data: dict[str, Any], keys: dict[str, type | tuple[type, ...]]
) -> None:
    missing = sorted(set(keys) - set(data))
    if missing:
        raise CorruptArtifact(f"{where} is missing key(s) {', '.join(missing)}")
    for key, kind in keys.items():
        value = data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CorruptArtifact(f"{where}: {key!r} has the wrong type ({type(value).__name__})")


def _check_tensor_list(where: str, listing: dict[str, Any]) -> None:
    for name, spec in listing.items():
        ok = isinstance(spec, dict) and isinstance(spec.get("dtype"), str)
        ok = ok and isinstance(spec.get("shape"), list)
        ok = ok and all(isinstance(s, int) and s >= 0 for s in spec["shape"])
        if not ok:
            raise CorruptArtifact(f"{where}: tensor entry {name!r} must be {{shape, dtype}}")


def rebuild_config(root: Path, meta: dict[str, Any]) -> Any:
    """The method's config dataclass from the stored fields (every field, none unknown; a field
    added since the artifact was saved takes its legacy value, see
    :func:`lrpt.methods.with_legacy_values`)."""
    key = meta["method"]
    stored = with_legacy_values(key, meta["config"])
    fields = config_fields(method_class(key).config_class)
    unknown, missing = sorted(set(stored) - set(fields)), sorted(set(fields) - set(stored))
    if unknown or missing:
        got = [f"unknown field(s) {', '.join(unknown)}"] if unknown else []
        got += [f"missing field(s) {', '.join(missing)}"] if missing else []
        raise ConfigMismatch(
            f"{str(root)!r}: config of method {key!r} has {' and '.join(got)}; "
            f"it takes: {', '.join(fields)}"
        )
    try:
        return make_config(key, **stored)
    except (ValueError, TypeError) as err:
        raise ConfigMismatch(f"{str(root)!r}: invalid config of method {key!r}: {err}") from None


def read_dims(root: Path, meta: dict[str, Any]) -> ModelDims:
    """The stored :class:`ModelDims` (with ``encoder_dim`` for instance-dependent methods)."""
    try:
        dims = ModelDims(**meta["dims"])
    except (TypeError, ValueError) as err:
        raise CorruptArtifact(f"{str(root)!r}: invalid dims {meta['dims']}: {err}") from None
    if not method_class(meta["method"]).static and dims.encoder_dim is None:
        raise CorruptArtifact(
            f"{str(root)!r}: method {meta['method']!r} is instance-dependent but dims has no "
            "encoder_dim"
        )
    return dims


def read_artifact(path: str | os.PathLike) -> dict[str, Any]:
    """The validated ``prompt.json`` of the artifact at ``path`` (tensors are not read).

    Checks: the directory and both files exist, the JSON parses and has every key with the
    right type, the format version is known, the method is registered, the config rebuilds
    (no unknown, missing or invalid field) and the dims are valid.

    Raises:
        ArtifactNotFound, NotAnArtifact, CorruptArtifact, FormatVersionError,
        UnknownMethodError, ConfigMismatch (all :class:`ArtifactError`).
    """
    root = artifact_dir(path)
    meta = _load_json(root)
    where = repr(str(root / JSON_NAME))
    version = meta.get("format_version")
    if version is None:
        raise CorruptArtifact(f"{where} has no format_version")
    if version != FORMAT_VERSION:
        raise FormatVersionError(
            f"{where}: format_version {version!r} is not supported; this lrpt reads version "
            f"{FORMAT_VERSION}"
        )
    _check_types(where, meta, TOP_KEYS)
    _check_types(f"{where} model", meta["model"], IDENTITY_KEYS)
    optional = {k: v for k, v in OPTIONAL_IDENTITY_KEYS.items() if k in meta["model"]}
    _check_types(f"{where} model", meta["model"], optional)
    if meta["encoder"] is not None:
        _check_types(f"{where} encoder", meta["encoder"], IDENTITY_KEYS)
    _check_tensor_list(where, meta["tensors"])
    if meta["method"] not in METHODS:
        raise UnknownMethodError(unknown_method(meta["method"], where))
    rebuild_config(root, meta)
    meta["config"] = with_legacy_values(meta["method"], meta["config"])
    read_dims(root, meta)
    return meta


def read_tensors(
    path: str | os.PathLike, meta: dict[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """The stored tensors (on CPU), checked against the listing in ``prompt.json``.

    Raises:
        CorruptArtifact: the safetensors file is empty, truncated or unreadable, or holds other
            tensors (names, shapes, dtypes) than ``prompt.json`` lists.
    """
    root = Path(path)
    meta = read_artifact(root) if meta is None else meta
    file = root / TENSORS_NAME
    try:
        tensors = safetensors.torch.load(file.read_bytes())
    except (SafetensorError, OSError) as err:
        size = file.stat().st_size if file.exists() else 0
        raise CorruptArtifact(
            f"{str(file)!r} is not a readable safetensors file ({size} bytes): {err}"
        ) from None
    stored, listed = tensor_specs(tensors), dict(sorted(meta["tensors"].items()))
    if stored != listed:
        raise CorruptArtifact(
            f"{str(file)!r} holds tensors {_describe(stored)} but {JSON_NAME} lists "
            f"{_describe(listed)}"
        )
    return tensors


def _describe(specs: dict[str, dict[str, Any]]) -> str:
    return "{" + ", ".join(f"{n}: {tuple(s['shape'])} {s['dtype']}" for n, s in specs.items()) + "}"
