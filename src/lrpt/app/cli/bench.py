"""``lrpt bench``: the speed comparison (``--speed``) and benchmark suites (``--suite``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from lrpt.app.bench.speed_options import SpeedOptions
from lrpt.app.method_options import flag

_SPEED_FIELDS = dataclasses.fields(SpeedOptions)


def add_speed_flags(group: Any) -> None:
    """One flag per :class:`SpeedOptions` field, absent (None) unless given: a bool field is a
    switch; the help text is the field's, with its default."""
    hints = typing.get_type_hints(SpeedOptions)
    for field in _SPEED_FIELDS:
        meta = dict(field.metadata)
        kwargs: dict[str, Any] = {
            "default": None,
            "help": meta.pop("help").format(default=field.default),
        }
        if hints[field.name] is bool:
            kwargs["action"] = "store_true"
        else:
            given = [a for a in typing.get_args(hints[field.name]) if a is not type(None)]
            kind = given[0] if len(given) == 1 else hints[field.name]
            kwargs["type"] = None if kind is str else kind
        group.add_argument(flag(field.name), **kwargs | meta)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--speed", action="store_true",
                      help="step time, memory and throughput vs pt and vs PEFT")  # fmt: skip
    mode.add_argument(
        "--suite", metavar="NAME", help="run bench/suites/NAME.toml (or a .toml path), resumably"
    )
    add_speed_flags(parser.add_argument_group("--speed"))
    suite = parser.add_argument_group("--suite")
    suite.add_argument(
        "--results-dir",
        type=Path,
        metavar="DIR",
        help="where suites keep their runs and summaries (default bench/results)",
    )
    suite.add_argument(
        "--list", action="store_true", help="list the suite's runs (finished or pending) only"
    )
    suite.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run (or --list) only the runs whose id matches this shell pattern, e.g. "
        "'mr/ept-*' (repeatable; ids as --list prints them); finished runs still count",
    )
    suite.add_argument(
        "--summarize",
        action="store_true",
        help="rewrite the suite's summary files from its finished runs; train nothing",
    )


def given_speed_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--speed`` flags given: :class:`SpeedOptions` field → value."""
    return {
        f.name: getattr(args, f.name) for f in _SPEED_FIELDS if getattr(args, f.name) is not None
    }


def run(args: argparse.Namespace) -> int:
    given = given_speed_options(args)
    if args.suite is not None:
        from lrpt.app.bench.suite import run_command

        if args.list and args.summarize:
            raise ValueError("--list and --summarize exclude each other")
        if given:
            flags = ", ".join(flag(name) for name in given)
            raise ValueError(f"{flags}: --speed options; a suite file sets its own settings")
        if args.only and args.summarize:
            raise ValueError("--only selects runs to train or list: not with --summarize")
        return run_command(
            args.suite, args.results_dir, list_only=args.list, summarize_only=args.summarize,
            only=args.only,
        )  # fmt: skip
    for name, value in (
        ("--results-dir", args.results_dir),
        ("--only", args.only),
        ("--list", args.list),
        ("--summarize", args.summarize),
    ):
        if value:
            raise ValueError(f"{name} goes with --suite")
    return run_speed_mode(SpeedOptions(**given))


def run_speed_mode(options: SpeedOptions) -> int:
    from lrpt.app.bench.speed import markdown, run_speed

    report = run_speed(options, progress=lambda m: print(m, file=sys.stderr))
    table = markdown(report)
    print(table)
    if options.out:
        from lrpt.fileio import atomic_write_text

        atomic_write_text(options.out, json.dumps(report, indent=2) + "\n")
        atomic_write_text(options.out.with_suffix(".md"), table + "\n")
    return 0
