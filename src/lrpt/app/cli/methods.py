"""``lrpt methods``: the registered prompt methods, their papers, formulas and defaults."""

from __future__ import annotations

import argparse
import dataclasses

from lrpt.methods import METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--markdown", action="store_true", help="print the README's table")


def table() -> str:
    """The method table as markdown, derived from the registry."""
    lines = [
        "| key | paper | prompt | trainable parameters | kind | defaults |",
        "|---|---|---|---|---|---|",
    ]
    for key, cls in METHODS.items():
        defaults = ", ".join(
            f"{f.name}={f.default}"
            for f in dataclasses.fields(cls.config_class)
            if f.default not in ("", None)
        )
        kind = "static" if cls.static else "instance-dependent"
        lines.append(
            f"| `{key}` | {cls.paper} | {cls.formula} | {cls.param_formula} | {kind} | {defaults} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.markdown:
        print(table())
        return 0
    for key, cls in METHODS.items():
        kind = "static" if cls.static else "instance-dependent"
        print(f"{key:<9} {kind:<18} {cls.paper:<26} {cls.param_formula}")
    return 0
