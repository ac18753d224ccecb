"""The GPU check: lrpt against PEFT on a config-built, Llama-shaped base of about 1 B parameters.

    python bench/gpu_check.py --out bench/results/gpu/h200.json       # on a CUDA machine
    python bench/gpu_check.py --device cpu --dtype float32 --layers 2 --hidden 64 \\
        --intermediate 128 --heads 4 --kv-heads 2 --vocab 512 --rounds 1 --out /tmp/smoke.json

Nothing is downloaded: the base has Llama-3.2-1B's shape (16 layers, width 2048, MLP 8192, 32
heads, 8 key-value heads, 128,256-token vocabulary: 1.24 B parameters) with random weights from a
fixed seed, saved once to a scratch directory with lrpt's byte-level tokenizer, and the inputs
are the rows of ``tests/fixtures/topics.jsonl``. It runs ``lrpt bench --speed`` on it (``pt`` and
``ulpt`` against PEFT's prompt tuning, on ``--device`` in ``--dtype``) and adds the achieved
fraction of the device's dense matmul throughput in that dtype, measured in the same process:
a training step of a frozen model with a trainable input prompt costs about ``4 · N · T`` FLOPs
(forward ``2·N·T``; backward ``2·N·T`` for the activations' gradients through every layer: the
frozen weights need no gradient, which saves the other half of a full backward pass), ``N`` the
non-embedding weights and ``T`` the tokens in the batch, prompt included in every row (the work
PEFT does; the shared prefix does less, so its fraction is an effective one). The CUDA-marked
tests are run separately: ``python -m pytest -q -m cuda``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lrpt.app.bench.machine import matmul_peak
from lrpt.app.bench.speed import markdown, run_speed
from lrpt.app.bench.speed_options import SpeedOptions
from lrpt.base_models import load_model
from lrpt.fileio import atomic_write_text
from lrpt.placement import resolve_device, resolve_dtype

FIXTURE = str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "topics.jsonl")


def build_base(args: argparse.Namespace, where: Path) -> int:
    """Save the random Llama-shaped model and the tiny model's tokenizer to ``where``; → its
    number of parameters."""
    config = LlamaConfig(
        hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, vocab_size=args.vocab, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(where)
    tokenizer: PreTrainedTokenizerFast = load_model("tiny-llama").tokenizer
    tokenizer.save_pretrained(where)
    return sum(p.numel() for p in model.parameters())


def step_flops(report: dict[str, Any], blocks: int) -> float:
    """``4 · N · T``: a training step's FLOPs over the batch's tokens, prompt included."""
    tokens = report["batch_size"] * (report["tokens_per_row_mean"] + report["num_tokens"])
    return 4 * blocks * tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("layers", 16), ("hidden", 2048), ("intermediate", 8192),
                          ("heads", 32), ("kv-heads", 8), ("vocab", 128256)):  # fmt: skip
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--num-tokens", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--against-dtype", default=None, help="also time pt and PEFT with the base in this dtype"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    where = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, where)
    with tempfile.TemporaryDirectory() as scratch:
        params = build_base(args, Path(scratch))
        blocks = params - args.vocab * args.hidden  # tied head: one vocabulary matrix
        if where.type == "cuda":
            torch.cuda.reset_peak_memory_stats(where)
        options = SpeedOptions(scratch, FIXTURE, num_tokens=args.num_tokens,
                               batch_size=args.batch_size, rounds=args.rounds,
                               methods=("pt", "ulpt"), device=str(where), dtype=args.dtype,
                               against_dtype=args.against_dtype)  # fmt: skip
        report = run_speed(options)
    peak = matmul_peak(dtype, where, reps=20)
    flops = step_flops(report, blocks)
    report["model"] = f"random Llama-shaped, {params / 1e9:.2f} B parameters"
    report["device_name"] = (
        torch.cuda.get_device_name(where) if where.type == "cuda" else report["machine"]
    )
    report["matmul_peak_tflop_s"] = peak / 1e12
    report["step_tflop"] = flops / 1e12
    report["achieved"] = {
        row["name"]: {
            "examples_per_s": report["batch_size"] / row["median_s"],
            "fraction_of_matmul_peak": flops / row["median_s"] / peak,
        }
        for row in report["training"]
    }
    if where.type == "cuda":
        report["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated(where) / 2**30
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), markdown(report) + "\n")
    print(markdown(report))
    print(json.dumps(report["achieved"], indent=2))


if __name__ == "__main__":
    main()
