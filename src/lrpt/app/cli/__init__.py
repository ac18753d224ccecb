"""The ``lrpt`` command: one sub-command per module, errors as one line and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

# sub-command name → module in lrpt.app exposing add_arguments(parser) and run(args) -> int
COMMANDS: dict[str, tuple[str, str]] = {
    "methods": ("lrpt.app.cli.methods", "list the prompt methods with formulas and defaults"),
    "params": ("lrpt.app.cli.params", "count a method's trainable parameters"),
    "inspect": ("lrpt.app.cli.inspect", "show a saved prompt and its singular-value spectrum"),
    "export": ("lrpt.app.cli.export", "export a static prompt as a PEFT prompt-tuning adapter"),
    "train": ("lrpt.app.cli.train", "train a prompt on a task and save it with its results"),
    "eval": ("lrpt.app.cli.eval", "evaluate a trained prompt on a task split"),
    "predict": ("lrpt.app.cli.predict", "predict labels (or generate) for texts with a prompt"),
    "data": ("lrpt.app.cli.data", "list the built-in tasks, or show one"),
    "bench": ("lrpt.app.cli.bench", "benchmark methods: speed vs pt and PEFT, or a suite"),
    "serve": ("lrpt.app.cli.serve", "serve trained prompts on one frozen model over HTTP"),
}

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit code 2
        self.exit(EXIT_BAD_INPUT, f"lrpt: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lrpt", description="Low-rank soft prompt tuning for frozen LMs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(cmd)
        cmd.set_defaults(module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args.module).run(args) or 0)
    except (ValueError, OSError) as err:  # bad input, or a path that cannot be read or written
        print(f"lrpt: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("lrpt: interrupted", file=sys.stderr)
        return 130
