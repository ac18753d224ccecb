"""The prompt's paths side by side in one process: packed vs shared vs naive, one prompt vs many.

    python bench/packed_speed.py --out bench/results/packed/cpu-fp32.json          # SmolLM2 shape
    python bench/packed_speed.py --shape llama-1b --device cuda --dtype bfloat16 \\
        --out bench/results/gpu/packed-llama-1b-bf16.json                           # on a GPU

Nothing is downloaded: the frozen base is config-built with random weights from a fixed seed
(``--shape smollm2-135m``: 30 layers, width 576, 9 heads, 3 key-value heads, MLP 1536, 49,152
tokens; ``llama-1b``: Llama-3.2-1B's shape), and the rows are random token ids of MR-like
lengths (a seeded normal, mean 32, s.d. 14, 5–80 tokens, after the BOS; the answer word's two
tokens end each training row and carry its labels). Per batch size it times, in rotating order
over ``--rounds`` rounds after a warm-up:

* ``train``: one AdamW step of ``pt`` (n = ``--num-tokens``) on each path of
  :class:`lrpt.PromptedModel` (``packed``, ``shared``, ``naive``), right-padded rows, loss on
  the labels; plus, with ``--dense``, the packed sequence run through the model's own SDPA with
  a dense 4-D mask (the mechanism the packed pass does not use: its cost grows with the square
  of the packed length);
* ``infer``: the answer-position logits (``logits_to_keep=1``) of left-padded rows, the prompt's
  prefix cached, on each path;
* ``mixed``: the same through a :class:`lrpt.bank.PromptBank` on the packed and the shared path,
  every row with the first prompt (``one``) or rows dealt round-robin over ``--prompts`` prompts
  (``mixed``).

Reported: median seconds per variant, per-round ratios (min / median / max) of the pairs that
matter, and the token counts (padded rows vs the packed pass). Ratios, not absolute times, are
the result; compare only numbers measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

import lrpt
from lrpt import packed as packed_module
from lrpt.bank import PromptBank
from lrpt.base_models import load_model
from lrpt.labels import IGNORE
from lrpt.packed import Packed, pack, packed_support
from lrpt.prefix import prefix_embeds

SHAPES = {  # layers, width, MLP, heads, key-value heads, vocabulary
    "smollm2-135m": (30, 576, 1536, 9, 3, 49152),
    "llama-1b": (16, 2048, 8192, 32, 8, 128256),
    "tiny": (2, 64, 128, 4, 2, 512),  # a smoke test of the script
}
PATHS = ("packed", "shared", "naive")

Step = Callable[[], Any]


def build_model(shape: str, device: torch.device, dtype: torch.dtype) -> LlamaForCausalLM:
    layers, width, mlp, heads, kv_heads, vocab = SHAPES[shape]
    config = LlamaConfig(
        hidden_size=width, intermediate_size=mlp, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
        max_position_embeddings=2048, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
        pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()


def row_lengths(count: int, seed: int = 0) -> list[int]:
    """MR-like token counts per row (after the BOS)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(count, generator=g) * 14 + 32).round().clamp(5, 80).long().tolist()


def batch(lengths: list[int], vocab: int, side: str, answer: int = 0) -> dict[str, torch.Tensor]:
    """``[BOS] + tokens`` per row, padded on ``side``; with ``answer`` tokens ending each row,
    labels on them (−100 elsewhere)."""
    g = torch.Generator().manual_seed(1)
    rows = [[1, *torch.randint(3, vocab, (n + answer,), generator=g).tolist()] for n in lengths]
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, IGNORE)
    for b, row in enumerate(rows):
        cols = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[b, cols], mask[b, cols] = torch.tensor(row), 1
        end = cols.stop
        labels[b, end - answer : end] = ids[b, end - answer : end]
    out = {"input_ids": ids, "attention_mask": mask}
    return out | ({"labels": labels} if answer else {})


def prompted(model: Any, tokenizer: Any, num_tokens: int, seed: int, path: str) -> Any:
    return lrpt.prompt_model("pt", model, tokenizer, seed=seed, num_tokens=num_tokens,
                             path=path, share_prefix=path != "naive")  # fmt: skip


def with_kernel(kernel: str, device: torch.device, step: Step) -> Step:
    """``step`` with the packed pass's rows attending by ``kernel`` (see lrpt.packed.KERNELS)."""

    def run() -> Any:
        packed_module.KERNELS[device.type] = kernel
        return step()

    return run


def packed_names(kernels: list[str]) -> list[tuple[str, str]]:
    """(variant name, kernel) of the packed path: ``packed``, or ``packed <kernel>`` each."""
    return [("packed" if len(kernels) == 1 else f"packed {k}", k) for k in kernels]


def train_steps(
    model: Any, tokenizer: Any, rows: dict, n: int, kernels: list[str], dense: bool
) -> dict[str, Step]:
    steps: dict[str, Step] = {}
    for name, kernel in packed_names(kernels):
        pm = prompted(model, tokenizer, n, 0, "packed")
        step = _adamw_step(pm, lambda pm=pm: pm(**rows).loss)
        steps[name] = with_kernel(kernel, model.device, step)
    for path in PATHS[1:]:
        pm = prompted(model, tokenizer, n, 0, path)
        steps[path] = _adamw_step(pm, lambda pm=pm: pm(**rows).loss)
    if dense:
        pm = prompted(model, tokenizer, n, 0, "packed")
        steps["dense"] = _adamw_step(pm, lambda pm=pm: dense_mask_loss(pm, rows))
    return steps


def _adamw_step(pm: Any, loss_of: Callable[[], torch.Tensor]) -> Step:
    """One AdamW step (lr 1e-3) of the prompt on ``loss_of()``; returns the loss."""
    opt = torch.optim.AdamW(pm.method.parameters(), lr=1e-3)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        return loss

    return lambda: float(cast(torch.Tensor, opt.step(closure)).detach())


def dense_mask_loss(pm: Any, rows: dict) -> torch.Tensor:
    """The packed sequence through the model's own attention with a dense 4-D mask."""
    rest = pm.after_prefix(rows["input_ids"], rows["attention_mask"], rows["labels"])
    block = prefix_embeds(pm.model, pm.method.prompt(1), pm.lead_id)
    one = torch.zeros(len(rest.embeds), dtype=torch.long, device=rest.embeds.device)
    packed = pack(rest.embeds, rest.rest_mask, one, [block])
    b, c = (rest.labels != IGNORE).nonzero(as_tuple=True)
    source = packed.where[b, c - 1]  # every label follows a token of its row here
    out = pm.model(inputs_embeds=packed.embeds, position_ids=packed.position_ids,
                   attention_mask=dense_mask(packed), logits_to_keep=source)  # fmt: skip
    return torch.nn.functional.cross_entropy(out.logits[0].float(), rest.labels[b, c])


def dense_mask(packed: Packed) -> torch.Tensor:
    """``(1, 1, T, T)`` bool: the packed pass's attention pattern for one in-pass prompt."""
    (group,) = packed.packing.groups
    total, size = packed.total, group.length
    segment = torch.full((total,), -1, device=packed.embeds.device)
    segment[packed.where[packed.where >= 0]] = torch.nonzero(packed.where >= 0)[:, 0]
    t = torch.arange(total, device=segment.device)
    causal = t[None, :] <= t[:, None]
    to_prompt = (t[None, :] < size) & (t[:, None] >= size)
    same = segment[None, :] == segment[:, None]
    return (to_prompt | (causal & same))[None, None]


def infer_steps(
    model: Any, tokenizer: Any, rows: dict, n: int, kernels: list[str]
) -> dict[str, Step]:
    steps: dict[str, Step] = {}
    for name, kernel in packed_names(kernels):
        pm = prompted(model, tokenizer, n, 0, "packed").eval()
        steps[name] = with_kernel(kernel, model.device, _logits(pm, rows))
    for path in PATHS[1:]:
        pm = prompted(model, tokenizer, n, 0, path).eval()
        steps[path] = _logits(pm, rows)
    return steps


def _logits(fn: Callable[..., Any], rows: dict, **extra: Any) -> Step:
    def run() -> None:
        with torch.inference_mode():
            fn(**rows, **extra, logits_to_keep=1)

    return run


def mixed_steps(
    model: Any, tokenizer: Any, rows: dict, n: int, prompts: int, kernels: list[str]
) -> dict[str, Step]:
    pms = {f"task{i}": prompted(model, tokenizer, n, i, "shared").eval() for i in range(prompts)}
    count = len(rows["input_ids"])
    one = ["task0"] * count
    mixed = [f"task{i % prompts}" for i in range(count)]
    steps: dict[str, Step] = {}
    for name, kernel in [*packed_names(kernels), ("shared", "")]:
        bank = PromptBank(pms, path=name.split()[0])
        for label, tasks in (("one", one), ("mixed", mixed)):
            step = _logits(bank, rows, tasks=tasks)
            steps[f"{name} {label}"] = with_kernel(kernel, model.device, step) if kernel else step
    return steps


def pairs(part: str, names: list[str]) -> list[tuple[str, str]]:
    """The ratios reported: every packed variant against shared and naive (train, infer) or, in
    mixed batches, many prompts against one on each path and against the shared one-prompt
    batch; the dense 4-D mask against the packed pass."""
    packed = [n for n in names if n.startswith("packed")]
    if part != "mixed":
        return [(a, b) for a in [*packed, "shared"] for b in ("shared", "naive") if a != b] + [
            ("dense", a) for a in packed
        ]
    paths = sorted({n.rsplit(" ", 1)[0] for n in names})
    return [(f"{p} mixed", f"{p} one") for p in paths] + [
        (f"{p} {w}", "shared one") for p in paths if p != "shared" for w in ("one", "mixed")
    ]


def measure(steps: dict[str, Step], rounds: int, warmup: int, sync: Callable[[], None]) -> dict:
    """Seconds per round of each step, in rotating order (each warmed up first)."""
    names = list(steps)
    for name in names:
        for _ in range(warmup):
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            sync()
            start = time.perf_counter()
            steps[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def ratios(times: dict[str, list[float]], which: list[tuple[str, str]]) -> dict[str, dict]:
    out = {}
    for a, b in which:
        if a in times and b in times:
            rs = [x / y for x, y in zip(times[a], times[b], strict=True)]
            out[f"{a} / {b}"] = {"min": min(rs), "median": statistics.median(rs), "max": max(rs)}
    return out


def tokens(rows: dict, n: int) -> dict[str, int]:
    """Token positions per pass: padded rows (shared), the packed pass, the prompt in every
    padded row (naive)."""
    mask = rows["attention_mask"]
    count, width = mask.shape
    real = int(mask.sum())
    return {"shared": (n + 1) + count * width, "packed": (n + 1) + real - count,
            "naive": count * (width + n)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--num-tokens", type=int, default=100)
    parser.add_argument("--prompts", type=int, default=16, help="prompts in a mixed batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--parts", nargs="+", default=["train", "infer", "mixed"],
                        choices=["train", "infer", "mixed"])  # fmt: skip
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="variant names to leave out, e.g. naive at large batches",
    )
    parser.add_argument("--dense", action="store_true", help="also the dense 4-D mask (train)")
    parser.add_argument(
        "--kernels", nargs="+", choices=["sdpa", "matmul"], default=None,
        help="how the packed pass's rows attend (default: lrpt.packed.KERNELS for the device); "
        "several: each timed as its own variant",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    device = torch.device(args.device)
    args.kernels = args.kernels or [packed_module.KERNELS.get(device.type, "matmul")]
    model = build_model(args.shape, device, getattr(torch, args.dtype))
    tokenizer = load_model("tiny-llama").tokenizer  # BOS 1, as the model's config
    vocab = model.config.vocab_size

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    report: dict[str, Any] = {
        "shape": args.shape, "device": str(device), "dtype": args.dtype,
        "machine": platform.processor() or platform.machine(),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "transformers": transformers.__version__, "num_tokens": args.num_tokens,
        "prompts": args.prompts, "rounds": args.rounds, "kernels": args.kernels,
        "packed_support": packed_support(model).reason or "ok", "batches": {},
    }  # fmt: skip
    for size in args.batch_sizes:
        lengths = row_lengths(size)
        entry: dict[str, Any] = {"row_tokens_mean": statistics.mean(lengths) + 1}
        for part in args.parts:
            side, answer = ("right", 2) if part == "train" else ("left", 0)
            rows = {k: v.to(device) for k, v in batch(lengths, vocab, side, answer).items()}
            if part == "train":
                steps = train_steps(
                    model, tokenizer, rows, args.num_tokens, args.kernels, args.dense
                )
            elif part == "infer":
                steps = infer_steps(model, tokenizer, rows, args.num_tokens, args.kernels)
            else:
                steps = mixed_steps(
                    model, tokenizer, rows, args.num_tokens, args.prompts, args.kernels
                )
            steps = {k: v for k, v in steps.items() if k not in args.skip}
            times = measure(steps, args.rounds, args.warmup, sync)
            entry[part] = {
                "median_s": {k: statistics.median(v) for k, v in times.items()},
                "times_s": times, "ratios": ratios(times, pairs(part, list(times))),
                "tokens": tokens(rows, args.num_tokens),
            }  # fmt: skip
            print(f"batch {size} {part}: " + json.dumps(entry[part]["ratios"]), flush=True)
        report["batches"][str(size)] = entry
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    """The median ratios, one table row per batch size and pair."""
    where = report["device_name"] or report["machine"]
    lines = [
        f"packed / shared / naive, {report['shape']} on {report['device']} ({where}), "
        f"{report['dtype']}, n = {report['num_tokens']}, {report['rounds']} rounds",
        "",
        "| batch | part | ratio | min | median | max |",
        "|---|---|---|---|---|---|",
    ]
    for size, entry in report["batches"].items():
        for part in ("train", "infer", "mixed"):
            for name, r in entry.get(part, {}).get("ratios", {}).items():
                lines.append(f"| {size} | {part} | {name} | {r['min']:.2f} | "
                             f"{r['median']:.2f} | {r['max']:.2f} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
