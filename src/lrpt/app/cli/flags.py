"""Command-line flags derived from declarations, never written by hand.

* Method options: one flag per config field of any registered method; a flag the chosen method's
  config does not have is rejected with a message listing the ones it takes.
* Run-spec flags: one flag per field of the run spec's sections (:mod:`lrpt.app.spec`), with the
  help text declared on the field; a bool field is a switch (``--name`` / ``--no-name``).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from typing import Any

from lrpt.app.spec import TRAINABLE_FAMILIES, ModelSpec
from lrpt.methods import METHODS
from lrpt.methods.base import config_fields


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no) → bool."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


_TYPES: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": parse_bool,
}


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
        caster = _TYPES[kind]
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
    check_method_options(method, given)
    return given


def config_defaults(method: str) -> dict[str, Any]:
    """The default value of each of ``method``'s config fields."""
    return {
        f.name: f.default
        for f in dataclasses.fields(METHODS[method].config_class)
        if f.default is not dataclasses.MISSING
    }


# --- run-spec flags: one flag per spec field, derived from the spec's dataclasses ----------


def _flag_type(hint: Any) -> type:
    """``int``, ``float`` or ``str`` from a field's type hint (``X | None`` included)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if len(args) != 1 or args[0] not in (int, float, str):
        raise TypeError(f"spec field type {hint!r} has no flag type")
    return args[0]


def _zero_is_none(caster: type) -> Any:
    def parse(text: str) -> Any:
        value = caster(text)
        return None if value == 0 else value

    return parse


def spec_flag(field: dataclasses.Field) -> str:
    """The flag of a spec field: its metadata's ``flag``, else ``--field-name``."""
    return field.metadata.get("flag") or flag(field.name)


def add_spec_flags(
    parser: argparse.ArgumentParser, section: str, cls: type, title: str, *, skip: tuple = ()
) -> None:
    """One flag per field of spec section ``cls`` (dest ``section.field``; absent unless given).

    Only given flags appear in the parsed namespace, so they can override a ``--config`` file.
    """
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or "help" not in field.metadata:
            continue
        meta = field.metadata
        if hints[field.name] is bool:  # --name sets it, --no-name clears it (over a --config)
            group.add_argument(
                spec_flag(field), dest=f"{section}.{field.name}",
                action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                help=meta["help"] or None,
            )  # fmt: skip
            continue
        caster = _flag_type(hints[field.name])
        kwargs: dict[str, Any] = {
            "dest": f"{section}.{field.name}",
            "type": _zero_is_none(caster) if meta.get("zero_is_none") else caster,
            "default": argparse.SUPPRESS,
            "help": meta["help"] or None,
        }
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if "choices" in meta:
            choices = meta["choices"]
            kwargs["choices"] = choices() if callable(choices) else choices
        group.add_argument(spec_flag(field), **kwargs)


def given_sections(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The spec flags given on the command line: ``{section: {field: value}}``, method options
    included (under ``method``)."""
    sections: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        section, dot, name = dest.partition(".")
        if dot:
            sections.setdefault(section, {})[name] = value
    options = {
        key.removeprefix("opt_"): value
        for key, value in vars(args).items()
        if key.startswith("opt_") and value is not None
    }
    if options:
        sections.setdefault("method", {}).update(options)
    return sections


def check_method_options(method: str, options: dict[str, Any]) -> None:
    """Options ``method``'s config does not have: rejected by flag name, with the ones it takes."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    fields = config_fields(METHODS[method].config_class)
    unused = sorted(set(options) - set(fields))
    if unused:
        takes = ", ".join(flag(f) for f in fields) or "no options"
        raise ValueError(
            f"method {method!r} does not use {', '.join(flag(u) for u in unused)}; it takes {takes}"
        )


def add_family_argument(parser: argparse.ArgumentParser) -> None:
    """``--family`` of a trained prompt's model: checked against the artifact's."""
    parser.add_argument(
        "--family",
        choices=TRAINABLE_FAMILIES,
        default=None,
        help="the model's family when its config.json cannot tell (must match the artifact's)",
    )


def add_placement_flags(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype`` of the frozen model, as ``lrpt train`` takes them."""
    add_spec_flags(
        parser, "model", ModelSpec, "device and precision", skip=("name", "family", "encoder")
    )


def placement(args: argparse.Namespace) -> dict[str, str]:
    """The ``--device`` and ``--dtype`` given (``auto`` where not)."""
    given = given_sections(args).get("model", {})
    return {"device": given.get("device", "auto"), "dtype": given.get("dtype", "auto")}
