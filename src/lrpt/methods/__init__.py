"""The registry of prompt methods: the one place a method key maps to its class.

A new method is one file in this package plus one entry in the tuple below (and its import);
everything else (CLI flags, ``lrpt params``, artifacts, the methods table, the contract tests)
reads :data:`METHODS`. See ``docs/adding-a-method.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

from lrpt.methods.base import (
    InitContext,
    MethodConfig,
    ModelDims,
    PromptMethod,
    TrainingDefaults,
    config_fields,
)
from lrpt.methods.dept import DePT
from lrpt.methods.dpt import DecomposedPromptTuning
from lrpt.methods.ept import EPT
from lrpt.methods.idpg import IDPG
from lrpt.methods.lopa import LoPA
from lrpt.methods.lopt1 import LoPT1
from lrpt.methods.lopt2 import LoPT2
from lrpt.methods.pt import PromptTuning
from lrpt.methods.residual import ResidualPromptTuning
from lrpt.methods.ulpt import ULPT

MethodT = TypeVar("MethodT", bound=type[PromptMethod[Any]])

METHODS: dict[str, type[PromptMethod[Any]]] = {}


def register(cls: MethodT) -> MethodT:
    """Add ``cls`` to :data:`METHODS` under ``cls.key`` after checking what it declares;
    ``ValueError`` naming the class and what is missing or wrong. Returns ``cls``."""
    name = getattr(cls, "__name__", repr(cls))
    if not (isinstance(cls, type) and issubclass(cls, PromptMethod)):
        raise ValueError(f"{name} is not a PromptMethod subclass")
    key = getattr(cls, "key", None)
    if not isinstance(key, str) or not key:
        raise ValueError(f"{name} must declare key, a non-empty string; got {key!r}")
    if key in METHODS:
        raise ValueError(f"method key {key!r} is taken by {METHODS[key].__name__}")
    config_class = getattr(cls, "config_class", None)
    if not (dataclasses.is_dataclass(config_class) and isinstance(config_class, type)):
        raise ValueError(f"{name}.config_class must be a dataclass; got {config_class!r}")
    if not getattr(config_class, "__dataclass_params__").frozen:  # noqa: B009 (not typed)
        raise ValueError(f"{name}.config_class {config_class.__name__} must be frozen")
    if "num_tokens" not in config_fields(config_class):
        raise ValueError(f"{name}.config_class {config_class.__name__} has no num_tokens")
    if not isinstance(getattr(cls, "training_defaults", None), TrainingDefaults):
        raise ValueError(f"{name} must declare training_defaults = TrainingDefaults(lr=...)")
    METHODS[key] = cls
    return cls


for _cls in (
    PromptTuning,
    DecomposedPromptTuning,
    LoPT1,
    LoPT2,
    ULPT,
    ResidualPromptTuning,
    DePT,
    EPT,
    LoPA,
    IDPG,
):
    register(_cls)
del _cls


def unknown_method(keys: str | Sequence[str], where: str = "") -> str:
    """The message for method key(s) not in :data:`METHODS`, naming the known ones:
    ``[where: ]unknown method 'x'; known methods: pt, ...`` (``method(s) ['x', 'y']`` for a
    list)."""
    what = f"method {keys!r}" if isinstance(keys, str) else f"method(s) {list(keys)}"
    return f"{where + ': ' if where else ''}unknown {what}; known methods: {', '.join(METHODS)}"


def method_class(key: str) -> type[PromptMethod[Any]]:
    """The class registered under ``key``; ``ValueError`` naming the key and the known ones."""
    try:
        return METHODS[key]
    except KeyError:
        raise ValueError(unknown_method(key)) from None


def make_config(key: str, **options: Any) -> MethodConfig:
    """The validated config of method ``key`` from keyword options (unknown ones rejected)."""
    cls = method_class(key)
    fields = config_fields(cls.config_class)
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(
            f"method {key!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(fields) or 'none'}"
        )
    return cls.config_class(**options)


def with_legacy_values(key: str, stored: dict[str, Any]) -> dict[str, Any]:
    """``stored`` config fields of method ``key`` completed with the config's ``legacy_values``
    (a ``ClassVar`` dict, optional): the value of each field added after artifacts were saved
    without it, as those artifacts were trained, so that they load as they were made."""
    legacy = getattr(method_class(key).config_class, "legacy_values", {})
    return {name: value for name, value in legacy.items() if name not in stored} | stored


__all__ = [
    "METHODS",
    "InitContext",
    "MethodConfig",
    "ModelDims",
    "PromptMethod",
    "TrainingDefaults",
    "make_config",
    "method_class",
    "register",
    "unknown_method",
    "with_legacy_values",
]
