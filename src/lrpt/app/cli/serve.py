"""``lrpt serve``: serve a store of trained prompts on one frozen causal LM over HTTP.

See docs/serving.md. Keys may come from the environment (``LRPT_API_KEY``, ``LRPT_ADMIN_KEY``)
so they do not show in the process list.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lrpt.app.cli.flags import add_placement_flags, given_sections, placement


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="KEY_OR_PATH", help="the frozen model")
    parser.add_argument("--prompts", required=True, metavar="DIR",
                        help="the prompt store: one artifact directory per prompt")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    add_placement_flags(parser)
    parser.add_argument("--api-key", default=os.environ.get("LRPT_API_KEY"),
                        help="bearer token for the API (default: $LRPT_API_KEY)")  # fmt: skip
    parser.add_argument("--admin-key", default=os.environ.get("LRPT_ADMIN_KEY"),
                        help="bearer token for uploads (default: $LRPT_ADMIN_KEY)")  # fmt: skip
    parser.add_argument("--max-batch", type=int, default=32, help="rows per model call")
    parser.add_argument("--max-queue", type=int, default=256,
                        help="requests waiting before new ones get 429")  # fmt: skip
    parser.add_argument("--max-input-tokens", type=int, default=1024)
    parser.add_argument("--max-tokens", type=int, default=256, help="the most max_tokens allowed")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20)
    parser.add_argument("--max-upload-bytes", type=int, default=64 << 20)
    parser.add_argument("--prefix-cache-mb", type=float, default=1024,
                        help="memory cap of the prompt-prefix LRU cache")  # fmt: skip
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from lrpt.app.serve.api import Limits
    from lrpt.app.serve.server import ServeOptions, serve

    limits = Limits(
        api_key=args.api_key or None, admin_key=args.admin_key or None,
        max_body_bytes=args.max_body_bytes, max_upload_bytes=args.max_upload_bytes,
        max_input_tokens=args.max_input_tokens, max_tokens=args.max_tokens,
        timeout=args.timeout,
    )  # fmt: skip
    serve(ServeOptions(
        model=args.model, prompts=Path(args.prompts), host=args.host, port=args.port,
        limits=limits, max_batch=args.max_batch, max_queue=args.max_queue,
        prefix_cache_mb=args.prefix_cache_mb, log_level=args.log_level,
        revision=given_sections(args).get("model", {}).get("revision"), **placement(args),
    ))  # fmt: skip
    return 0
