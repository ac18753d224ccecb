"""``lrpt params``: the trainable-parameter count of a method configuration, per tensor."""

from __future__ import annotations

import argparse
import json
import math

from lrpt.accounting import describe
from lrpt.app.cli.flags import add_method_options, method_options
from lrpt.app.trained import ENCODER_DIMS, default_encoder
from lrpt.methods import METHODS, method_class


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=sorted(METHODS), metavar="KEY",
                        help=f"one of {', '.join(METHODS)}")  # fmt: skip
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", metavar="KEY_OR_PATH", help="read d from this model")
    where.add_argument("--embed-dim", type=int, metavar="D", help="the model's hidden size d")
    parser.add_argument("--encoder-dim", type=int, metavar="K",
                        help="input-encoder size k (instance-dependent methods)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_method_options(parser)


def run(args: argparse.Namespace) -> int:
    options = method_options(args.method, args)
    cls = method_class(args.method)
    if args.encoder_dim is not None and cls.static:
        raise ValueError(f"method {args.method!r} uses no input encoder: drop --encoder-dim")
    embed_dim, encoder_dim = args.embed_dim, args.encoder_dim
    if args.model is not None:
        from lrpt.base_models import load_model
        from lrpt.model import model_dims

        embed_dim = model_dims(load_model(args.model).model).embed_dim
        if encoder_dim is None and not cls.static:
            encoder_dim = ENCODER_DIMS[default_encoder(args.model)]
    if not cls.static and encoder_dim is None:
        raise ValueError(f"method {args.method!r} needs --encoder-dim with --embed-dim")
    info = describe(args.method, int(embed_dim), encoder_dim, **options)
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"method {info['method']}  d={embed_dim}" + (f"  k={encoder_dim}" if encoder_dim else ""))
    print(f"config {info['config']}")
    width = max((len(n) for n in info["tensors"]), default=6)
    for name, shape in info["tensors"].items():
        print(f"  {name:<{width}}  {'×'.join(map(str, shape)):>12}  {math.prod(shape):>12,}")
    print(f"trainable parameters: {info['trainable_params']:,}")
    print(f"artifact size: {info['artifact_bytes']:,} bytes (prompt.json + prompt.safetensors)")
    return 0
