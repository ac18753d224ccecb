"""Command-line flags derived from declarations, never written by hand.

* Method options: one flag per config field of any registered method
  (:mod:`lrpt.app.method_options`); a flag the chosen method's config does not have is rejected
  with a message listing the ones it takes.
* Run-spec flags: one flag per field of the run spec's sections (:mod:`lrpt.app.spec`), with the
  help text declared on the field; a bool field is a switch (``--name`` / ``--no-name``).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from lrpt.app.method_options import PARSERS, check_method_options, flag, option_types
from lrpt.app.spec import TRAINABLE_FAMILIES, ModelSpec


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per method config field (default: not given)."""
    group = parser.add_argument_group("method options (each method takes a subset)")
    for name, kind in sorted(option_types().items()):
        caster = PARSERS[kind]
        metavar = "{true,false}" if kind == "bool" else kind.upper()
        group.add_argument(flag(name), dest=f"opt_{name}", type=caster, default=None,
                           metavar=metavar)  # fmt: skip


def _given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method options given on the command line (unchecked)."""
    return {
        key.removeprefix("opt_"): value
        for key, value in vars(args).items()
        if key.startswith("opt_") and value is not None
    }


def method_options(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line, checked against ``method``'s config fields."""
    given = _given_options(args)
    check_method_options(method, given)
    return given


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
    options = _given_options(args)
    if options:
        sections.setdefault("method", {}).update(options)
    return sections


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
