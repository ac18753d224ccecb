"""Where the methods start, measured against a token: row norms before any training.

    python bench/start_norms.py --model smollm2-135m --seed 0 \\
        --out bench/results/start/smollm2-135m.json

Builds each configuration below on the frozen model with the given init seed (no training, no
data) and reports, against the mean norm of the token embeddings vocab init draws from: EPT's
input update ``A B`` (the rows added to the input tokens), its experts' contribution to the
prompt and the prompt itself, under the default start and the earlier one; Residual PT's
LayerNorm term under ``norm_init = "ones"`` (the paper) and ``"token"``; IDPG's output bias.
The configurations are the ``fair`` suite's (EPT s = 61, r = 27, m = 256, l = 100).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

import lrpt
from lrpt.fileio import atomic_write_text
from lrpt.methods import InitContext
from lrpt.methods.blocks import mean_row_norm

EPT = {"num_tokens": 61, "rank": 27, "max_length": 256, "long_tokens": 100}
EPT_STARTS = {
    "default (svd_init=vectors, expert_init=zero_out)": {},
    "earlier (svd_init=sqrt_sigma, expert_init=linear)": {
        "svd_init": "sqrt_sigma",
        "expert_init": "linear",
    },
}


def stats(rows: torch.Tensor) -> dict[str, float]:
    """Mean, RMS and largest L2 norm of the rows of ``rows (n, d)``."""
    norms = rows.detach().float().norm(dim=-1)
    return {
        "mean": round(float(norms.mean()), 4),
        "rms": round(float(norms.square().mean().sqrt()), 4),
        "max": round(float(norms.max()), 4),
    }


def measure(model_key: str, seed: int) -> dict[str, Any]:
    loaded = lrpt.load_model(model_key)
    model, tokenizer = loaded.model, loaded.tokenizer
    ctx = InitContext(model.get_input_embeddings(), torch.Generator(), tokenizer)
    report: dict[str, Any] = {
        "model": model_key,
        "seed": seed,
        "embed_dim": model.get_input_embeddings().weight.shape[1],
        "token_norm": round(mean_row_norm(ctx), 4),
        "ept": {},
        "residual": {},
    }
    with torch.no_grad():
        for label, start in EPT_STARTS.items():
            ept = lrpt.build_method("ept", model, tokenizer, seed=seed, **EPT, **start)
            short = ept.prompt_embeddings
            report["ept"][label] = {
                "input_update": stats(ept.update_matrix()),
                "experts": stats(ept.amended(short)),
                "short_prompt": stats(short),
                "prompt": stats(ept.materialise()),
            }
        for norm_init in ("ones", "token"):
            res = lrpt.build_method("residual", model, tokenizer, seed=seed, norm_init=norm_init)
            term = res.materialise() - res.prompt_embeddings
            report["residual"][f"norm_init={norm_init}"] = {
                "layer_norm_term": stats(term),
                "prompt": stats(res.materialise()),
            }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    text = json.dumps(measure(args.model, args.seed), indent=2, ensure_ascii=False) + "\n"
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text)
    print(text, end="")


if __name__ == "__main__":
    main()
