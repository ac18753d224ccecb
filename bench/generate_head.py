"""A ``generate`` training step: the vocabulary head on the targets only, or everywhere.

    python bench/generate_head.py --model smollm2-135m --task mr --dtype float32 bfloat16 \\
        --out bench/results/speed/generate-head-smollm2-135m-mr.json

Only the target tokens of a ``generate`` example are labelled, so the objective asks the model for
the logits of the last ``T + 1`` positions (``logits_to_keep``; ``T``: the longest target in the
batch) instead of a ``(B, L, V)`` tensor over every input position. For each dtype, in one
process, this times a training step (forward, backward, AdamW) of ``pt`` both ways on the same
batch, alternating round by round: the objective's loss (head on the target window) and the
model's own loss given the same labels (head at every position, what a plain Hugging Face or
PEFT loop computes). The two losses are the same number (tests/app/test_tasks.py pins it, and
the gradients); the report gives both, the median step times and the per-round ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import lrpt
from lrpt.app.bench.machine import machine_line
from lrpt.app.bench.speed import Variant, measure, ratios
from lrpt.app.data.objectives import make_objective, pad
from lrpt.app.data.task_format import task_spec
from lrpt.app.data.tasks import load_task
from lrpt.fileio import atomic_write_text
from lrpt.model import IGNORE


def step(pm: lrpt.PromptedModel, loss_fn: Any) -> Any:
    opt = torch.optim.AdamW(pm.method.parameters(), lr=1e-3)

    def run() -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return run


def measure_dtype(model: str, task: str, dtype: str, batch_size: int, rounds: int) -> dict:
    base = lrpt.load_model(model, device="cpu", dtype=dtype)
    data = load_task(task)
    spec = task_spec(data, base.family, objective="generate")
    objective = make_objective(spec, base.tokenizer, base.family, base.model.config)
    batch = objective.collate(data.train[:batch_size])
    # the same rows and labels, for the model's own loss (every position's logits)
    targets = [objective.target_ids(g) for g in batch.golds]  # type: ignore[attr-defined]
    ids, mask = pad([r + t for r, t in zip(batch.rows, targets, strict=True)], objective.pad_id,
                    left=True)  # fmt: skip
    labels = torch.full_like(ids, IGNORE)
    for i, t in enumerate(targets):
        labels[i, ids.shape[1] - len(t) :] = torch.tensor(t)

    def prompted() -> lrpt.PromptedModel:
        return lrpt.prompt_model("pt", base.model, base.tokenizer, seed=0, num_tokens=100)

    window, everywhere = prompted(), prompted()
    variants = [
        Variant("head on the target window", step(window, lambda: objective.loss(window, batch))),
        Variant("head everywhere", step(everywhere, lambda: everywhere(ids, mask, labels).loss)),
    ]
    measure(variants, rounds)
    return {
        "dtype": dtype,
        "input_tokens": int(ids.shape[1]),
        "target_window": max(map(len, targets)) + 1,
        "median_s": {v.name: statistics.median(v.times) for v in variants},
        "loss_first": {v.name: v.losses[0] for v in variants},
        "window_vs_everywhere": ratios(variants[0], variants[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="mr")
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = {
        "model": args.model,
        "task": args.task,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "machine": machine_line(),
        "date": time.strftime("%Y-%m-%d"),
        "runs": [
            measure_dtype(args.model, args.task, d, args.batch_size, args.rounds)
            for d in args.dtype
        ],
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
