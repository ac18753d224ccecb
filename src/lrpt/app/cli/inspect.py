"""``lrpt inspect``: what a saved prompt artifact holds, and the spectrum of its prompt.

For static methods the prompt is materialised from the artifact alone: the method is rebuilt on
CPU from the stored config and dims, its stored tensors are loaded, and its frozen tensors are
regenerated and checked against the stored fingerprints (``lrpt.artifact.load_method``). Frozen
tensors that derive from the base model's embeddings (``lopt2``'s ``X0``) cannot be regenerated
without it; only then is the base model loaded (``--model``, default: the name in the artifact)
and checked against the stored identity.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from typing import Any

import torch

from lrpt.artifact import (
    ModelRequired,
    artifact_size,
    load_method,
    read_artifact,
    read_tensors,
)
from lrpt.errors import LrptError
from lrpt.fileio import atomic_write_bytes
from lrpt.methods import PromptMethod, method_class

RANK_TOL = 1e-3  # threshold effective rank: singular values above RANK_TOL × the largest
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


def spectrum(prompt: torch.Tensor) -> dict[str, Any]:
    """Singular values of ``prompt`` (n, d) and its two effective ranks (see ``HELP``)."""
    sigma = torch.linalg.svdvals(prompt.detach().to("cpu", torch.float64))  # (min(n, d),)
    top = float(sigma[0]) if len(sigma) else 0.0
    threshold = int((sigma > RANK_TOL * top).sum()) if top > 0 else 0
    total = float(sigma.sum())
    entropy_rank = 0.0
    if total > 0:
        p = sigma[sigma > 0] / total
        entropy_rank = math.exp(float(-(p * p.log()).sum()))
    return {
        "shape": list(prompt.shape),
        "singular_values": [float(s) for s in sigma],
        "effective_rank": threshold,
        "entropy_effective_rank": entropy_rank,
        "rank_tolerance": RANK_TOL,
    }


def _method(args: argparse.Namespace, meta: dict[str, Any]) -> tuple[PromptMethod, str | None]:
    """The artifact's method, loading the base model only if given or needed."""
    if args.model is None:
        try:
            return load_method(args.path), None
        except ModelRequired:
            pass
    from lrpt.base_models import load_model

    name = args.model or meta["model"]["name"]
    # the artifact's own model loads as the family it was trained as; a given one as it is
    family = None if args.model else meta["model"]["family"]
    loaded = load_model(name, family=family)
    return load_method(args.path, model=loaded.model, tokenizer=loaded.tokenizer), name


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LrptError("--plot needs matplotlib: pip install 'lrpt[plot]'") from None
    return plt


def _plot(path: str, spec: dict[str, Any], title: str) -> None:
    plt = _pyplot()
    sigma = spec["singular_values"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(range(1, len(sigma) + 1), [max(s, 1e-30) for s in sigma], marker=".")
    if sigma and sigma[0] > 0:
        ax.axhline(RANK_TOL * sigma[0], color="grey", linestyle="--", label=f"{RANK_TOL:g}·σ₁")
        ax.legend()
    ax.set_xlabel("index i")
    ax.set_ylabel("singular value σ_i")
    ax.set_title(
        f"{title}: rank {spec['effective_rank']} (σ > {RANK_TOL:g}·σ₁), "
        f"entropy rank {spec['entropy_effective_rank']:.2f}",
        fontsize=9,
    )
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, image.getvalue())


def collect(args: argparse.Namespace) -> dict[str, Any]:
    """Everything ``inspect`` reports, as one JSON-able dict."""
    meta = read_artifact(args.path)
    tensors = read_tensors(args.path, meta)
    cls = method_class(meta["method"])
    counts = {"method": 0, "head": 0}
    for name, tensor in tensors.items():
        counts["head" if name.startswith("head.") else "method"] += tensor.numel()
    info: dict[str, Any] = {
        "path": str(args.path),
        "method": meta["method"],
        "paper": cls.paper,
        "formula": cls.formula,
        "static": cls.static,
        "config": meta["config"],
        "dims": meta["dims"],
        "trainable_params": counts,
        "bytes": artifact_size(args.path),
        "model": meta["model"],
        "encoder": meta["encoder"],
        "extra": meta["extra"],
        "tensors": meta["tensors"],
        "training": meta["training"],
        "model_loaded": None,
        "spectrum": None,
    }
    if cls.static:
        method, info["model_loaded"] = _method(args, meta)
        with torch.no_grad():
            info["spectrum"] = spectrum(method.materialise())
    return info


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
        _pyplot()  # fail before any work when matplotlib is missing
    info = collect(args)
    if args.plot:
        if info["spectrum"] is None:
            raise LrptError(
                f"--plot: method {info['method']!r} is instance-dependent: it has no single "
                "prompt to plot"
            )
        _plot(args.plot, info["spectrum"], f"{info['method']} {args.path}")
    if args.json:
        print(json.dumps(info))
    else:
        _print(info)
        if args.plot:
            print(f"wrote {args.plot}")
    return 0
