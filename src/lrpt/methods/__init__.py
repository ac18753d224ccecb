"""The registry of prompt methods: the one place a method key maps to its class."""

from __future__ import annotations

from typing import Any

from lrpt.methods.base import InitContext, ModelDims, PromptMethod
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

METHODS: dict[str, type[PromptMethod]] = {
    cls.key: cls
    for cls in (
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
    )
}


def method_class(key: str) -> type[PromptMethod]:
    """The class registered under ``key``; ``ValueError`` naming the key and the known ones."""
    try:
        return METHODS[key]
    except KeyError:
        raise ValueError(f"unknown method {key!r}; known methods: {', '.join(METHODS)}") from None


def make_config(key: str, **options: Any) -> Any:
    """The validated config of method ``key`` from keyword options (unknown ones rejected)."""
    cls = method_class(key)
    fields = cls.config_class.__dataclass_fields__
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(
            f"method {key!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(fields) or 'none'}"
        )
    return cls.config_class(**options)


__all__ = ["METHODS", "InitContext", "ModelDims", "PromptMethod", "make_config", "method_class"]
