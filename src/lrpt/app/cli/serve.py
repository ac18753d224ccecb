"""``lrpt serve``: serve a store of trained prompts on one frozen causal LM over HTTP.

See docs/serving.md. The flags are :class:`~lrpt.app.serve.config.ServeConfig`'s fields. Keys
may come from the environment (``LRPT_API_KEY``, ``LRPT_ADMIN_KEY``) so they do not show in the
process list.
"""

from __future__ import annotations

import argparse

from lrpt.app.cli.engine_flags import add_vllm_flags, vllm_settings
from lrpt.app.serve.config import flags, from_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag in flags():
        parser.add_argument(flag.name, **flag.arguments())
    add_vllm_flags(parser)


def run(args: argparse.Namespace) -> int:
    from lrpt.app.serve.server import serve

    serve(from_arguments(vars(args)), vllm_settings(args))
    return 0
