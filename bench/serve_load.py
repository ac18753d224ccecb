"""A bounded load generator for ``lrpt serve`` over loopback.

    python bench/serve_load.py --url http://127.0.0.1:8000 --num-prompts 100 \\
        --concurrency 32 --duration 20 --max-requests 5000 --out load.json

Closed loop (``--concurrency`` clients, each sending its next request when the last one
returns) or open loop (``--rate R``: Poisson arrivals at R requests/s; an arrival while 256
are in flight is dropped and counted as ``dropped``).
Requests go to the first ``--num-prompts`` prompts the server lists, Zipf-skewed (``--zipf``;
the first prompt gets the most), or all to one (``--single``); a ``--classify-share`` of them
classify an MR test review, the others generate ``--max-tokens`` tokens (greedy) after it. It
stops by itself after ``--duration`` seconds or ``--max-requests`` requests, whichever is first,
and refuses any address that is not loopback. Reports throughput, status counts and latency
percentiles as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

MAX_IN_FLIGHT = 256


@dataclass
class Load:
    """One load run's settings."""

    url: str
    prompts: list[str]
    texts: list[str]
    concurrency: int = 32
    duration: float = 20.0
    max_requests: int = 5000
    classify_share: float = 0.5
    max_tokens: int = 8
    zipf: float = 1.1
    rate: float | None = None
    seed: int = 0
    headers: dict[str, str] = field(default_factory=dict)


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"refusing {url!r}: the load generator only drives loopback servers")


def zipf_weights(count: int, s: float) -> list[float]:
    return [1 / (rank**s) for rank in range(1, count + 1)]


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "mean": statistics.fmean(ordered),
            "max": ordered[-1]}  # fmt: skip


def pick(rng: random.Random, load: Load, weights: list[float]) -> tuple[str, str, dict[str, Any]]:
    """The next request: its kind, path and body."""
    prompt = rng.choices(load.prompts, weights)[0]
    text = rng.choice(load.texts)
    if rng.random() < load.classify_share:
        return "classify", "/v1/classify", {"model": prompt, "input": text}
    body = {"model": prompt, "prompt": f"Review: {text}\nSentiment:",
            "max_tokens": load.max_tokens, "temperature": 0}  # fmt: skip
    return "generate", "/v1/completions", body


async def run_load(load: Load) -> dict[str, Any]:
    """Drive the server with ``load``; → the report."""
    check_loopback(load.url)
    rng = random.Random(load.seed)
    weights = zipf_weights(len(load.prompts), load.zipf)
    latencies: dict[str, list[float]] = {"classify": [], "generate": []}
    statuses: dict[str, int] = {}
    tokens = 0
    sent = 0
    start = time.perf_counter()
    stop_at = start + load.duration

    def next_request() -> tuple[str, str, dict[str, Any]]:
        return pick(rng, load, weights)

    async def one(client: httpx.AsyncClient, kind: str, path: str, body: dict[str, Any]) -> None:
        nonlocal tokens
        began = time.perf_counter()
        try:
            response = await client.post(path, json=body)
            status = str(response.status_code)
        except httpx.HTTPError as err:
            status = f"transport error: {type(err).__name__}"
            response = None
        statuses[status] = statuses.get(status, 0) + 1
        if response is not None and response.status_code == 200:
            latencies[kind].append(time.perf_counter() - began)
            if kind == "generate":
                tokens += response.json()["usage"]["completion_tokens"]

    def more() -> bool:
        return sent < load.max_requests and time.perf_counter() < stop_at

    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
    async with httpx.AsyncClient(base_url=load.url, timeout=120, limits=limits,
                                 headers=load.headers) as client:  # fmt: skip
        if load.rate is None:

            async def client_loop() -> None:
                nonlocal sent
                while more():
                    sent += 1
                    await one(client, *next_request())

            await asyncio.gather(*(client_loop() for _ in range(load.concurrency)))
        else:
            tasks: set[asyncio.Task[None]] = set()
            while more():
                await asyncio.sleep(rng.expovariate(load.rate))
                sent += 1
                if len(tasks) >= MAX_IN_FLIGHT:  # counted as sent, never answered
                    statuses["dropped"] = statuses.get("dropped", 0) + 1
                    continue
                task = asyncio.create_task(one(client, *next_request()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    ok = statuses.get("200", 0)
    return {
        "prompts": len(load.prompts),
        "concurrency": load.concurrency if load.rate is None else None,
        "rate": load.rate,
        "seconds": round(elapsed, 3),
        "requests": sent,
        "statuses": dict(sorted(statuses.items())),
        "throughput_rps": ok / elapsed,
        "generated_tokens_per_s": tokens / elapsed,
        "latency_s": {
            "all": percentiles(latencies["classify"] + latencies["generate"]),
            "classify": percentiles(latencies["classify"]),
            "generate": percentiles(latencies["generate"]),
        },
    }


def mr_texts(limit: int = 1000) -> list[str]:
    """MR's test reviews (the built-in task's data)."""
    from lrpt.app.data.tasks import load_task

    return [ex.text for ex in load_task("mr").test[:limit]]


def served_prompts(url: str, headers: dict[str, str]) -> list[str]:
    models = httpx.get(url + "/v1/models", headers=headers).json()["data"]
    return [m["id"] for m in models if "parent" in m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--num-prompts", type=int, default=100)
    parser.add_argument("--single", action="store_true", help="every request to one prompt")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=None, help="open loop: requests/s")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--max-requests", type=int, default=5000)
    parser.add_argument("--classify-share", type=float, default=0.5)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    check_loopback(args.url)
    if args.duration > 600 or args.max_requests > 100_000:
        raise SystemExit("a run is bounded: --duration ≤ 600 s and --max-requests ≤ 100000")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    prompts = served_prompts(args.url, headers)[: 1 if args.single else args.num_prompts]
    load = Load(args.url, prompts, mr_texts(), args.concurrency, args.duration,
                args.max_requests, args.classify_share, args.max_tokens, args.zipf, args.rate,
                args.seed, headers)  # fmt: skip
    report = asyncio.run(run_load(load))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
