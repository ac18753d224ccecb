"""Throughput and latency of ``lrpt serve`` against concurrency, from a load test's results.

    python bench/serve_plot.py bench/results/serve/results.json   # → summary.png beside it

Reads the closed-loop concurrency sweep that ``bench/serve_bench.py`` wrote (mixed prompts,
1 … N clients) and draws requests/s and the p50 / p99 latency of each run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    sweep = json.loads(args.results.read_text())["sweep"]
    clients = [run["concurrency"] for run in sweep]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(clients, [run["throughput_rps"] for run in sweep], marker="o")
    left.set(xlabel="concurrent clients", ylabel="requests/s", xscale="log", title="throughput")
    for q in ("p50", "p99"):
        right.plot(clients, [run["latency_s"]["all"][q] for run in sweep], marker="o", label=q)
    right.set(xlabel="concurrent clients", ylabel="latency (s)", xscale="log", title="latency")
    right.legend()
    for ax in (left, right):
        ax.set_xticks(clients, [str(c) for c in clients])
    fig.suptitle("lrpt serve: mixed prompts, closed-loop clients")
    fig.tight_layout()
    out = args.results.with_name("summary.png")
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    main()
