"""Metadata of run-spec fields: help text and how each field's command-line flag reads it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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
