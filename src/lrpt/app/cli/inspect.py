"""``lrpt inspect``: what a saved prompt artifact holds, and the spectrum of its prompt
(computed by :mod:`lrpt.app.inspection`)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from lrpt.app.inspection import RANK_TOL, collect, plot_spectrum, pyplot
from lrpt.errors import LrptError

SHOWN = 20  # singular values printed in the terminal table (--json has all)

HELP = f"""Effective rank of the materialised n × d prompt P with singular values σ_1 ≥ … ≥ σ_k:
  threshold: the number of σ_i > {RANK_TOL:g} · σ_1;
  entropy (Roy & Vetterli 2007): exp(−Σ p_i ln p_i) with p_i = σ_i / Σ_j σ_j (0 ln 0 = 0).
The method's frozen tensors are regenerated from the artifact; when they derive from the base
model's embeddings (e.g. lopt2's X0) the model is loaded too (--model)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = HELP
    parser.add_argument("path", metavar="PATH", help="a prompt artifact directory")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="write the singular-value spectrum as a PNG (needs matplotlib)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--model",
        metavar="KEY_OR_PATH",
        help="base model to check against; loaded anyway when the method's frozen "
        "tensors derive from it (default: the model named in the artifact)",
    )


def _print(info: dict[str, Any]) -> None:
    sizes, model = info["bytes"], info["model"]
    print(
        f"artifact  {info['path']}  ({sizes['total']:,} bytes on disk: "
        + ", ".join(f"{n} {b:,}" for n, b in sizes.items() if n != "total")
        + ")"
    )
    print(f"method    {info['method']}  ({info['paper']}: {info['formula']})")
    print("config    " + "  ".join(f"{k}={v}" for k, v in info["config"].items()))
    print(
        f"model     {model['name'] or '?'}  ({model['family']}, d={model['hidden_size']}, "
        f"vocab {model['vocab_size']:,}, embeddings sha256 {model['embedding_sha256'][:16]}…)"
    )
    if info["encoder"]:
        enc = info["encoder"]
        print(f"encoder   {enc['name'] or '?'}  (k={enc['hidden_size']})")
    counts = info["trainable_params"]
    print(f"trainable {counts['method']:,} method + {counts['head']:,} head parameters")
    width = max((len(n) for n in info["tensors"]), default=6)
    for name, spec in info["tensors"].items():
        shape = "×".join(map(str, spec["shape"]))
        print(f"  {name:<{width}}  {shape:>12}  {math.prod(spec['shape']):>10,}  {spec['dtype']}")
    for key, value in info["extra"].items():
        print(f"extra     {key}={value}")
    print(f"training  {json.dumps(info['training']) if info['training'] else 'none recorded'}")
    _print_spectrum(info)


def _print_spectrum(info: dict[str, Any]) -> None:
    spec = info["spectrum"]
    if spec is None:
        print(
            f"spectrum  none: method {info['method']!r} is instance-dependent (its prompt "
            "depends on each input)"
        )
        return
    if info["model_loaded"]:
        print(f"note      rebuilt the frozen tensors with base model {info['model_loaded']!r}")
    n, d = spec["shape"]
    print(
        f"spectrum  of the materialised {n}×{d} prompt: effective rank "
        f"{spec['effective_rank']} (σ > {RANK_TOL:g}·σ₁), entropy effective rank "
        f"{spec['entropy_effective_rank']:.3f} (Roy & Vetterli 2007)"
    )
    sigma = spec["singular_values"]
    energy, total = 0.0, sum(s * s for s in sigma) or 1.0
    print(f"  {'i':>4}  {'σ_i':>12}  {'σ_i/σ_1':>10}  {'energy':>7}")
    for i, s in enumerate(sigma[:SHOWN], 1):
        energy += s * s
        ratio = s / sigma[0] if sigma[0] > 0 else 0.0
        print(f"  {i:>4}  {s:>12.5g}  {ratio:>10.3g}  {energy / total:>7.1%}")
    if len(sigma) > SHOWN:
        print(f"  … {len(sigma) - SHOWN} more (--json lists all)")


def run(args: argparse.Namespace) -> int:
    if args.plot:
        pyplot()  # fail before any work when matplotlib is missing
    info = collect(args.path, args.model)
    if args.plot:
        if info["spectrum"] is None:
            raise LrptError(
                f"--plot: method {info['method']!r} is instance-dependent: it has no single "
                "prompt to plot"
            )
        plot_spectrum(args.plot, info["spectrum"], f"{info['method']} {args.path}")
    if args.json:
        print(json.dumps(info))
    else:
        _print(info)
        if args.plot:
            print(f"wrote {args.plot}")
    return 0
