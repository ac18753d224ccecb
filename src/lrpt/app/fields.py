"""Run-spec fields: each declared once, with its default, help text and how its flag reads it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


def describe(
    help: str,
    *,
    flag: str | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
    zero_is_none: bool = False,
) -> dict[str, Any]:
    """A spec field's metadata: its help text and how its command-line flag reads it.

    ``flag``: the flag's name when it is not ``--field-name``; ``choices``: the allowed values,
    or a function giving them when the parser is built (the method registry can grow);
    ``zero_is_none``: the flag's value 0 means None ("all").
    """
    meta: dict[str, Any] = {"help": help}
    if flag is not None:
        meta["flag"] = flag
    if metavar is not None:
        meta["metavar"] = metavar
    if choices is not None:
        meta["choices"] = choices
    if zero_is_none:
        meta["zero_is_none"] = True
    return meta


def option(
    help: str,
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    flag: str | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
    zero_is_none: bool = False,
) -> Any:
    """A spec field, declared once: its default (none: required) and its flag's metadata
    (:func:`describe`). Use it in a :func:`spec_section` class."""
    meta = describe(help, flag=flag, metavar=metavar, choices=choices, zero_is_none=zero_is_none)
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, option))
def spec_section(cls: type[T]) -> type[T]:
    """A spec section: a frozen dataclass whose fields are :func:`option` (or plain
    ``dataclasses.field``) declarations; type checkers read the options' defaults."""
    return dataclass(frozen=True)(cls)
