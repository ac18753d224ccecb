"""Data parallel on one CPU: 2 processes × 1 thread (torchrun, gloo) vs 1 process × 2 threads
(and 1 process × 1 thread, for reference).

    python bench/distributed.py --out bench/results/distributed/smollm2-135m-mr.json

Both train the same run (the same seed and global batch) with ``lrpt train``; each run's
``results.json`` gives the training time of its optimizer steps (evaluation excluded), from
which examples/s and seconds per step. The runs go one after the other; the load average
before each is recorded, since other jobs may share the CPU. The largest difference of a step's
loss from the one-process run's shows the runs train the same prompt. A Markdown table is
written next to the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lrpt.app.bench.machine import machine_line
from lrpt.app.training.outdir import RESULTS
from lrpt.fileio import atomic_write_text


def train_args(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        "train", "--model", args.model, "--task", args.task, "--method", args.method,
        "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--seed", "0",
        "--eval-every", str(args.steps + 1), "--max-eval-examples", "16",
        "--max-test-examples", "16", "--checkpoint-every", str(args.steps), "--quiet",
        "--out", str(out),
    ]  # fmt: skip


def variants(args: argparse.Namespace, where: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name → (command, environment) of each variant."""
    lrpt = [sys.executable, "-m", "lrpt"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    return {
        "1 process × 2 threads": (
            [*lrpt, *train_args(args, where / "p1t2")],
            {"OMP_NUM_THREADS": "2"},
        ),
        "1 process × 1 thread": (
            [*lrpt, *train_args(args, where / "p1t1")],
            {"OMP_NUM_THREADS": "1"},
        ),
        "2 processes × 1 thread": (
            [*torchrun, "2", "-m", "lrpt", *train_args(args, where / "p2t1")],
            {"OMP_NUM_THREADS": "1"},
        ),
    }


def measure(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=os.environ | env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    out = Path(cmd[cmd.index("--out") + 1])
    results = json.loads((out / RESULTS).read_text())
    steps, seconds = results["steps"], results["train_seconds"]
    batch = results["training"]["batch_size"]
    return {
        "command": " ".join(f"{k}={v}" for k, v in env.items()) + " " + " ".join(cmd),
        "load_average_before": round(load, 2),
        "steps": steps,
        "global_batch": batch,
        "train_seconds": seconds,
        "seconds_per_step": round(seconds / steps, 3),
        "examples_per_second": round(batch * steps / seconds, 2),
        "wall_seconds": round(wall, 1),
        "train_loss": results["train_loss"],
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"# Data parallel on the CPU: {report['model']} on {report['task']}",
        "",
        f"{report['machine']}; {report['note']}",
        "",
        "| variant | s/step | examples/s | load before | max Δ step loss |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in report["variants"].items():
        lines.append(
            f"| {name} | {row['seconds_per_step']:.2f} | {row['examples_per_second']:.2f} | "
            f"{row['load_average_before']:.1f} | {row['max_loss_difference']:.2g} |"
        )
    lines += ["", "Commands:", ""]
    lines += [f"    {row['command']}" for row in report["variants"].values()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="mr")
    parser.add_argument("--method", default="pt")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "model": args.model,
        "task": args.task,
        "method": args.method,
        "machine": machine_line(),
        "note": "the CPU was shared with other jobs (see each variant's load average)",
        "variants": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, (cmd, env) in variants(args, Path(tmp)).items():
            report["variants"][name] = measure(cmd, env)
            print(name, report["variants"][name]["examples_per_second"], "examples/s")
    rows = list(report["variants"].values())
    for row in rows:
        pairs = zip(row["train_loss"], rows[0]["train_loss"], strict=True)
        diff = max(abs(a - b) for a, b in pairs)
        row["max_loss_difference"] = float(f"{diff:.3g}")
    for row in rows:  # the commands as a reader would type them
        row["command"] = row["command"].replace(sys.executable, "python").replace(tmp, "runs")
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), table(report))


if __name__ == "__main__":
    main()
