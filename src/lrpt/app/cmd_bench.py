"""``lrpt bench``: the speed comparison (``--speed``) and benchmark suites (``--suite``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lrpt.methods import METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--speed", action="store_true",
                      help="step time, memory and throughput vs pt and vs PEFT")  # fmt: skip
    mode.add_argument(
        "--suite", metavar="NAME", help="run bench/suites/NAME.toml (or a .toml path), resumably"
    )
    # --speed options
    parser.add_argument("--model", default="smollm2-135m", help="causal LM key or path")
    parser.add_argument("--task", default="mr", help="task whose inputs are used")
    parser.add_argument("--num-tokens", type=int, default=100, help="prompt length n")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated methods to time against pt")  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the JSON report here (and .md beside it)")
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
        "--summarize",
        action="store_true",
        help="rewrite the suite's summary files from its finished runs; train nothing",
    )


def run(args: argparse.Namespace) -> int:
    if args.suite is not None:
        from lrpt.app.bench_suite import run_command

        if args.list and args.summarize:
            raise ValueError("--list and --summarize exclude each other")
        return run_command(
            args.suite, args.results_dir, list_only=args.list, summarize_only=args.summarize
        )
    for flag, value in (
        ("--results-dir", args.results_dir),
        ("--list", args.list),
        ("--summarize", args.summarize),
    ):
        if value:
            raise ValueError(f"{flag} goes with --suite")
    return run_speed_mode(args)


def run_speed_mode(args: argparse.Namespace) -> int:
    from lrpt.app.bench_speed import markdown, run_speed

    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    if "pt" not in methods:
        methods.insert(0, "pt")
    for name, value in (("--num-tokens", args.num_tokens), ("--batch-size", args.batch_size),
                        ("--rounds", args.rounds)):  # fmt: skip
        if value < 1:
            raise ValueError(f"{name} must be ≥ 1, got {value}")
    report = run_speed(args.model, args.task, num_tokens=args.num_tokens,
                       batch_size=args.batch_size, rounds=args.rounds, methods=methods,
                       progress=lambda m: print(m, file=sys.stderr))  # fmt: skip
    table = markdown(report)
    print(table)
    if args.out:
        from lrpt.fileio import atomic_write_text

        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
        atomic_write_text(args.out.with_suffix(".md"), table + "\n")
    return 0
