"""Method options by name, across the registry: their types, and the check of one method's options.

The command line (one ``--flag`` per option, :mod:`lrpt.app.cli.flags`) and the benchmark suites
(an entry's ``options = {...}``, :mod:`lrpt.app.bench.suite`) both read them from here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from lrpt.methods import METHODS, method_class
from lrpt.methods.base import config_fields


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no) → bool."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# an option's type name → the parser of its command-line text
PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": parse_bool,
}


def flag(name: str) -> str:
    """An option's flag: ``num_tokens`` → ``--num-tokens``."""
    return "--" + name.replace("_", "-")


def option_types() -> dict[str, str]:
    """Every config field of every registered method → its type name (must agree across methods)."""
    types: dict[str, str] = {}
    for cls in METHODS.values():
        for name, field in config_fields(cls.config_class).items():
            kind = field.type if isinstance(field.type, str) else field.type.__name__
            if kind not in PARSERS:
                raise TypeError(f"config field {cls.key}.{name} has unsupported type {kind}")
            if types.setdefault(name, kind) != kind:
                raise TypeError(f"config field {name!r} has types {types[name]} and {kind}")
    return types


def check_method_options(method: str, options: Mapping[str, Any]) -> None:
    """Options ``method``'s config does not have: rejected by flag name, with the ones it takes
    (an unknown ``method``: rejected naming the known ones)."""
    fields = config_fields(method_class(method).config_class)
    unused = sorted(set(options) - set(fields))
    if unused:
        takes = ", ".join(flag(f) for f in fields) or "no options"
        raise ValueError(
            f"method {method!r} does not use {', '.join(flag(u) for u in unused)}; it takes {takes}"
        )
