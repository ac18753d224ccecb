"""``lrpt bench``: the speed comparison (``--speed``) and benchmark suites (``--suite``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lrpt.methods import METHODS, unknown_method
from lrpt.placement import DTYPE_CHOICES, resolve_device

SPEED_DEFAULTS = {
    "model": "smollm2-135m",
    "task": "mr",
    "num_tokens": 100,
    "batch_size": 16,
    "rounds": 3,
    "methods": ",".join(METHODS),
    "device": "auto",
    "dtype": "auto",
    "against_dtype": None,
    "naive": False,
    "out": None,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--speed", action="store_true",
                      help="step time, memory and throughput vs pt and vs PEFT")  # fmt: skip
    mode.add_argument(
        "--suite", metavar="NAME", help="run bench/suites/NAME.toml (or a .toml path), resumably"
    )
    # --speed options (None: not given; the defaults are SPEED_DEFAULTS)
    speed = parser.add_argument_group("--speed")
    speed.add_argument("--model", help="causal LM key or path (default smollm2-135m)")
    speed.add_argument("--task", help="task whose inputs are used (default mr)")
    speed.add_argument("--num-tokens", type=int, help="prompt length n (default 100)")
    speed.add_argument("--batch-size", type=int, help="default 16")
    speed.add_argument("--rounds", type=int, help="alternating measurement rounds (default 3)")
    speed.add_argument("--methods", help="comma-separated methods to time against pt (default all)")
    speed.add_argument(
        "--device", metavar="DEVICE", help="auto (default: CUDA if available), cpu, cuda:N, mps"
    )
    speed.add_argument(
        "--dtype", choices=DTYPE_CHOICES,
        help="the frozen model's precision, for lrpt and PEFT alike (default auto: float32 on "
        "CPU, bfloat16 on CUDA where supported)",
    )  # fmt: skip
    speed.add_argument(
        "--against-dtype", choices=DTYPE_CHOICES,
        help="also time pt and PEFT on a second copy of the model in this precision, in the same "
        "rounds, and report the step-time ratio (e.g. --dtype bfloat16 --against-dtype float32)",
    )  # fmt: skip
    speed.add_argument(
        "--naive", action="store_true", default=None,
        help="also time each static method without the shared prefix (its prompt run with "
        "every row, the papers' setting) against pt without it, beside the shared-prefix ratios",
    )  # fmt: skip
    speed.add_argument("--out", type=Path, help="write the JSON report here (and .md beside it)")
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


def run(args: argparse.Namespace) -> int:
    if args.suite is not None:
        from lrpt.app.bench.suite import run_command

        if args.list and args.summarize:
            raise ValueError("--list and --summarize exclude each other")
        given = [k for k in SPEED_DEFAULTS if getattr(args, k) is not None]
        if given:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
            raise ValueError(f"{flags}: --speed options; a suite file sets its own settings")
        if args.only and args.summarize:
            raise ValueError("--only selects runs to train or list: not with --summarize")
        return run_command(
            args.suite, args.results_dir, list_only=args.list, summarize_only=args.summarize,
            only=args.only,
        )  # fmt: skip
    for flag, value in (
        ("--results-dir", args.results_dir),
        ("--only", args.only),
        ("--list", args.list),
        ("--summarize", args.summarize),
    ):
        if value:
            raise ValueError(f"{flag} goes with --suite")
    for key, default in SPEED_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    return run_speed_mode(args)


def run_speed_mode(args: argparse.Namespace) -> int:
    from lrpt.app.bench.speed import markdown, run_speed

    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(unknown_method(unknown, "--methods"))
    if "pt" not in methods:
        methods.insert(0, "pt")
    for name, value in (("--num-tokens", args.num_tokens), ("--batch-size", args.batch_size),
                        ("--rounds", args.rounds)):  # fmt: skip
        if value < 1:
            raise ValueError(f"{name} must be ≥ 1, got {value}")
    resolve_device(args.device)  # an unavailable device fails before anything loads
    report = run_speed(args.model, args.task, num_tokens=args.num_tokens,
                       batch_size=args.batch_size, rounds=args.rounds, methods=methods,
                       progress=lambda m: print(m, file=sys.stderr), device=args.device,
                       dtype=args.dtype, against_dtype=args.against_dtype,
                       naive=bool(args.naive))  # fmt: skip
    table = markdown(report)
    print(table)
    if args.out:
        from lrpt.fileio import atomic_write_text

        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
        atomic_write_text(args.out.with_suffix(".md"), table + "\n")
    return 0
