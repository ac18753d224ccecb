"""Command-line flags derived from the method registry: one flag per config field of any method.

A flag a method's config does not have is rejected with a message listing the ones it takes.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from lrpt.methods import METHODS
from lrpt.methods.base import config_fields

_TYPES = {"int": int, "float": float, "str": str, "bool": None}


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no) → bool."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_types() -> dict[str, str]:
    """Every config field of every registered method → its type name (must agree across methods)."""
    types: dict[str, str] = {}
    for cls in METHODS.values():
        for name, field in config_fields(cls.config_class).items():
            kind = field.type if isinstance(field.type, str) else field.type.__name__
            if kind not in _TYPES:
                raise TypeError(f"config field {cls.key}.{name} has unsupported type {kind}")
            if types.setdefault(name, kind) != kind:
                raise TypeError(f"config field {name!r} has types {types[name]} and {kind}")
    return types


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per method config field (default: not given)."""
    group = parser.add_argument_group("method options (each method takes a subset)")
    for name, kind in sorted(option_types().items()):
        caster = parse_bool if kind == "bool" else _TYPES[kind]
        metavar = "{true,false}" if kind == "bool" else kind.upper()
        group.add_argument(flag(name), dest=f"opt_{name}", type=caster, default=None,
                           metavar=metavar)  # fmt: skip


def method_options(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line, checked against ``method``'s config fields."""
    given = {
        key.removeprefix("opt_"): value
        for key, value in vars(args).items()
        if key.startswith("opt_") and value is not None
    }
    fields = config_fields(METHODS[method].config_class)
    unused = sorted(set(given) - set(fields))
    if unused:
        takes = ", ".join(flag(f) for f in fields) or "no options"
        raise ValueError(
            f"method {method!r} does not use {', '.join(flag(u) for u in unused)}; it takes {takes}"
        )
    return given


def config_defaults(method: str) -> dict[str, Any]:
    """The default value of each of ``method``'s config fields."""
    return {
        f.name: f.default
        for f in dataclasses.fields(METHODS[method].config_class)
        if f.default is not dataclasses.MISSING
    }
