"""The artifact format: file names, version, the keys of ``prompt.json`` and its JSON layout."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from lrpt.errors import LrptError

FORMAT_VERSION = 1
JSON_NAME = "prompt.json"
TENSORS_NAME = "prompt.safetensors"
FILES = (JSON_NAME, TENSORS_NAME)
IDENTITY_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "family": str,
    "hidden_size": int,
    "vocab_size": int,
    "embedding_sha256": str,
}
# optional keys of the model identity: the Hub commit of a model loaded by Hub id
OPTIONAL_IDENTITY_KEYS: dict[str, type | tuple[type, ...]] = {"revision": str}
TOP_KEYS: dict[str, type | tuple[type, ...]] = {
    "format_version": int,
    "method": str,
    "config": dict,
    "dims": dict,
    "init_seed": int,
    "model": dict,
    "encoder": (dict, type(None)),
    "extra": dict,
    "frozen": dict,
    "tensors": dict,
    "training": (dict, type(None)),
}

# a JSON list of numbers laid out one per line by json.dumps(indent=...); newlines inside JSON
# strings are escaped, so this only ever matches structure
_NUMBER_LIST = re.compile(r"\[\s*\n\s*(-?[\d.eE+-]+(?:,\s*\n\s*-?[\d.eE+-]+)*)\s*\n\s*\]")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` → ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def tensor_spec(tensor: torch.Tensor) -> dict[str, Any]:
    """``{shape, dtype}`` of ``tensor`` as ``prompt.json`` lists it."""
    return {"shape": list(tensor.shape), "dtype": dtype_name(tensor.dtype)}


def tensor_specs(tensors: Mapping[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    """:func:`tensor_spec` of each tensor, sorted by name."""
    return {name: tensor_spec(t) for name, t in sorted(tensors.items())}


def config_dict(config: Any) -> dict[str, Any]:
    """Every field of a method's config (or dims) dataclass, by name."""
    return dataclasses.asdict(config)


def finite(value: Any) -> Any:
    """``value`` with non-finite floats (NaN, ±inf) replaced by None: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def json_bytes(meta: dict[str, Any]) -> bytes:
    """Indented JSON with lists of numbers (shapes) kept on one line; strict (no NaN)."""
    try:
        text = json.dumps(meta, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise LrptError(f"artifact metadata is not plain JSON (training summary?): {err}") from None
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(re.split(r",\s*", m[1])) + "]", text)
    return (text + "\n").encode("utf-8")


def plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples → lists)."""
    return json.loads(json.dumps(value))
