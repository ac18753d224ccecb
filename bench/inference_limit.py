"""Inference against the hardware's limit: ``lrpt eval`` examples/s vs this CPU's matmul peak.

    python bench/inference_limit.py --prompt bench/results/quick/mr/ulpt-n100-r2/seed0/prompt \\
        --dtype float32 bfloat16 --out bench/results/limit/smollm2-135m-mr.json

For each dtype, in one process: (1) the CPU's dense matmul throughput, the median of repeated
``n × n @ n × n`` products (the practical ceiling for a transformer forward on this machine);
(2) the trained prompt evaluated on MR's test split with the ``classify`` objective, as ``lrpt
eval`` runs it (shared prefix cached once per task, answer-position logits only), timed end to
end; (3) the forward FLOPs those examples need: ``2 · N · T`` for the ``N`` non-embedding
weights of the transformer blocks over the ``T`` real (unpadded) input tokens, plus the attention
scores and mixing (``4 · d`` per token pair, causal, prompt prefix included) and the vocabulary
head at the answer positions only (``2 · d · V`` per example). The report gives examples/s and
the achieved fraction of the measured peak.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from lrpt.app.bench.machine import machine_line, matmul_peak
from lrpt.app.data.objectives import make_objective
from lrpt.app.runs import eval_data, load_trained
from lrpt.app.spec import DataSpec
from lrpt.app.training.evaluate import evaluate, subset
from lrpt.fileio import atomic_write_text

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def forward_flops(model: Any, lengths: list[int], prefix: int, answers: int) -> float:
    """Forward FLOPs of ``lengths`` real input tokens per example after a ``prefix``-long
    cached prompt: block weights, causal attention (prefix included), the head at ``answers``
    positions per example."""
    config = model.config
    d, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    embed = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight.numel()
    blocks = sum(p.numel() for p in model.parameters()) - embed
    if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        blocks -= head
    total = 0.0
    for t in lengths:
        pairs = t * prefix + t * (t + 1) / 2  # each token attends to the prefix and its past
        total += 2 * blocks * t + layers * 4 * d * pairs + 2 * d * vocab * answers
    return total


def measure(prompt: str, dtype_name: str, batch_size: int, limit: int | None) -> dict[str, Any]:
    dtype = DTYPES[dtype_name]
    peak = matmul_peak(dtype)
    trained = load_trained(prompt)
    pm = trained.pm
    pm.model.to(dtype)
    task = eval_data(DataSpec(), trained.spec)
    examples = subset(task.test, limit)
    objective = make_objective(trained.spec, pm.tokenizer, pm.family, pm.model.config)
    evaluate(pm, objective, examples[:batch_size], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    metrics = evaluate(pm, objective, examples, batch_size=batch_size)
    seconds = time.perf_counter() - start
    lengths = [len(row) for row in objective.collate(examples, golds=False).rows]
    prefix = pm.method.config.num_tokens + 1
    flops = forward_flops(pm.model, lengths, prefix, answers=1)
    return {
        "dtype": dtype_name,
        "examples": len(examples),
        "seconds": round(seconds, 3),
        "examples_per_s": round(len(examples) / seconds, 2),
        "metrics": metrics,
        "mean_input_tokens": round(sum(lengths) / len(lengths), 1),
        "forward_gflop_per_example": round(flops / len(examples) / 1e9, 4),
        "matmul_peak_gflop_s": round(peak / 1e9, 1),
        "achieved_gflop_s": round(flops / seconds / 1e9, 1),
        "fraction_of_peak": round(flops / seconds / peak, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"], choices=DTYPES)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="test examples (default all)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = {
        "prompt": args.prompt,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "machine": machine_line(),
        "date": time.strftime("%Y-%m-%d"),
        "runs": [measure(args.prompt, d, args.batch_size, args.limit) for d in args.dtype],
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
