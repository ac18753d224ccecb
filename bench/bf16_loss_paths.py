"""One MR batch's loss on SmolLM2-135M in float32 and bfloat16, with each attention
implementation, on the shared-prefix and the naive path (no training, a ``pt`` prompt of 100
vocabulary rows, seed 0): how far bf16 rounding moves the loss, and how far the two paths drift
apart in bf16.

    python bench/bf16_loss_paths.py
"""

from __future__ import annotations

import torch

import lrpt
from lrpt.app.bench.speed import task_texts, train_batch


def main() -> None:
    texts, answers, _ = task_texts("mr", 16)
    print("| dtype | attention | shared prefix | naive | shared / naive − 1 |")
    print("|---|---|---|---|---|")
    for dtype in ("float32", "bfloat16"):
        base = lrpt.load_model("smollm2-135m", device="cpu", dtype=dtype)
        batch = train_batch(base.tokenizer, texts, answers)
        for attention in ("sdpa", "eager"):
            base.model.set_attn_implementation(attention)
            pm = lrpt.prompt_model("pt", base.model, base.tokenizer, seed=0, num_tokens=100)
            with torch.no_grad():
                shared = pm(**batch).loss.item()
                pm.share_prefix = False
                naive = pm(**batch).loss.item()
            print(f"| {dtype} | {attention} | {shared:.4f} | {naive:.4f} | "
                  f"{shared / naive - 1:+.2%} |")  # fmt: skip


if __name__ == "__main__":
    main()
