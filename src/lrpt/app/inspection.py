"""What a saved prompt artifact holds, and the singular-value spectrum of its prompt.

For static methods the prompt is materialised from the artifact alone: the method is rebuilt on
CPU from the stored config and dims, its stored tensors are loaded, and its frozen tensors are
regenerated and checked against the stored fingerprints (``lrpt.artifact.load_method``). Frozen
tensors that derive from the base model's embeddings (``lopt2``'s ``X0``) cannot be regenerated
without it; only then is the base model loaded (``model``, default: the name in the artifact)
and checked against the stored identity.
"""

from __future__ import annotations

import io
import math
import os
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


def spectrum(prompt: torch.Tensor) -> dict[str, Any]:
    """Singular values of ``prompt`` (n, d) and its two effective ranks: the number of σ_i above
    ``RANK_TOL`` · σ_1, and exp of the entropy of σ / Σσ (Roy & Vetterli 2007)."""
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


def _method(
    path: str | os.PathLike, model: str | None, meta: dict[str, Any]
) -> tuple[PromptMethod, str | None]:
    """The artifact's method, loading the base model only if given or needed."""
    if model is None:
        try:
            return load_method(path), None
        except ModelRequired:
            pass
    from lrpt.base_models import load_model

    name = model or meta["model"]["name"]
    # the artifact's own model loads as the family it was trained as; a given one as it is
    family = None if model else meta["model"]["family"]
    loaded = load_model(name, family=family)
    return load_method(path, model=loaded.model, tokenizer=loaded.tokenizer), name


def pyplot() -> Any:
    """matplotlib's pyplot (Agg backend), or a one-line error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LrptError("--plot needs matplotlib: pip install 'lrpt[plot]'") from None
    return plt


def plot_spectrum(path: str, spec: dict[str, Any], title: str) -> None:
    """The singular values of :func:`spectrum` as a PNG at ``path`` (written atomically)."""
    plt = pyplot()
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


def collect(path: str | os.PathLike, model: str | None = None) -> dict[str, Any]:
    """Everything ``lrpt inspect`` reports on the artifact at ``path``, as one JSON-able dict
    (``model``: the base model to check against; see the module docstring)."""
    meta = read_artifact(path)
    tensors = read_tensors(path, meta)
    cls = method_class(meta["method"])
    counts = {"method": 0, "head": 0}
    for name, tensor in tensors.items():
        counts["head" if name.startswith("head.") else "method"] += tensor.numel()
    info: dict[str, Any] = {
        "path": str(path),
        "method": meta["method"],
        "paper": cls.paper,
        "formula": cls.formula,
        "static": cls.static,
        "config": meta["config"],
        "dims": meta["dims"],
        "trainable_params": counts,
        "bytes": artifact_size(path),
        "model": meta["model"],
        "encoder": meta["encoder"],
        "extra": meta["extra"],
        "tensors": meta["tensors"],
        "training": meta["training"],
        "model_loaded": None,
        "spectrum": None,
    }
    if cls.static:
        method, info["model_loaded"] = _method(path, model, meta)
        with torch.no_grad():
            info["spectrum"] = spectrum(method.materialise())
    return info
