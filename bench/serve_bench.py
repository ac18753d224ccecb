"""The ``lrpt serve`` load test: many prompts on SmolLM2-135M, mixed vs single prompt vs PEFT.

    python bench/serve_bench.py --out bench/results/serve --prompts 1000 --spread 100 \\
        --duration 20

1. A prompt store of ``--prompts`` names, cycling through the static MR prompts trained on
   SmolLM2-135M under ``bench/results/*/mr`` whose tensors are present (in the repository: the
   quick suite's ULPT prompt, 100 tokens of rank 2), each name its own prompt to the server
   (its own prefix in the cache), served by ``lrpt serve --model smollm2-135m`` on loopback.
2. The load generator (``bench/serve_load.py``): MR test reviews, half classified, half
   followed by 8 greedy tokens, over ``--spread`` prompts (Zipf-skewed): closed loop at
   several concurrencies (throughput and latency against concurrency), the same load on a
   single prompt, an open-loop run at 70 % of the peak throughput, and an overload run far
   past the queue's bound; first a warm-up classifies once with each of the prompts, so their
   prefixes are cached (a long-running server's steady state). Then the same server with
   ``--max-batch 1`` (one request at a time, prefixes still cached).
3. The baseline: each request handled alone, in this process, by PEFT's prompt tuning (one
   ``PeftModel`` per prompt length, the request's prompt copied in), for ``--duration``
   seconds: what a server without mixed-prompt batching does (PEFT cannot batch different
   prompts), minus any HTTP cost. It runs at least 6 requests (within 6 × ``--duration``).

Every run is bounded in time; the raw reports go to ``--out`` as JSON, with ``summary.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch
from serve_load import Load, mr_texts, percentiles, run_load, served_prompts, zipf_weights

from lrpt.app.bench.machine import machine_line

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "bench" / "results"
QUEUE = 64
MIN_BASELINE = 6  # requests the baseline runs at least (within 6 × --duration)


def static_sources() -> list[Path]:
    from lrpt.methods import method_class

    found = []
    for path in sorted(SOURCES.glob("*/mr/*/seed*/prompt")):
        if not (path / "prompt.safetensors").is_file():
            continue  # a suite run whose tensors are not committed
        meta = json.loads((path / "prompt.json").read_text())
        if method_class(meta["method"]).static and meta["model"]["name"] == "smollm2-135m":
            found.append(path)
    return found


def make_store(root: Path, count: int, sources: list[Path]) -> dict[str, Path]:
    names = {}
    for i in range(count):
        name = f"p{i:05d}"
        shutil.copytree(sources[i % len(sources)], root / name)
        names[name] = sources[i % len(sources)]
    return names


def start_server(store: Path, port: int, log: Path, max_batch: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "lrpt", "serve", "--model", "smollm2-135m", "--prompts",
               str(store), "--port", str(port), "--max-batch", str(max_batch), "--max-queue",
               str(QUEUE), "--log-level", "warning"]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start in 600 s")


def peft_baseline(
    names: dict[str, Path], prompts: list[str], texts: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Each request alone through PEFT's prompt tuning, the same request mix, for a while."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    import lrpt
    from lrpt.artifact import load_method

    base = lrpt.load_model("smollm2-135m")
    tok = base.tokenizer
    rows: dict[Path, torch.Tensor] = {}
    models: dict[int, Any] = {}
    label_ids = [tok(" negative")["input_ids"][0], tok(" positive")["input_ids"][0]]
    rng = random.Random(args.seed)
    weights = zipf_weights(len(prompts), args.zipf)
    latencies: dict[str, list[float]] = {"classify": [], "generate": []}
    done = 0
    start = time.perf_counter()
    while (time.perf_counter() - start < args.duration or done < MIN_BASELINE) and (
        time.perf_counter() - start < 6 * args.duration
    ):
        source = names[rng.choices(prompts, weights)[0]]
        if source not in rows:
            method = load_method(source, model=base.model, tokenizer=tok)
            with torch.no_grad():
                rows[source] = method.materialise().detach()
        prompt = rows[source]
        n = prompt.shape[0]
        if n not in models:
            config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=n)
            models[n] = get_peft_model(copy.copy(base.model), config).eval()
        peft_model = models[n]
        text = f"Review: {rng.choice(texts)}\nSentiment:"
        classify = rng.random() < args.classify_share
        began = time.perf_counter()
        with torch.inference_mode():
            peft_model.prompt_encoder["default"].embedding.weight.copy_(prompt)
            ids = tok([text], return_tensors="pt")
            if classify:
                logits = peft_model(**ids).logits[0, -1]
                logits.float().log_softmax(-1)[label_ids].argmax()
            else:
                peft_model.generate(**ids, max_new_tokens=args.max_tokens, do_sample=False,
                                    pad_token_id=tok.pad_token_id)  # fmt: skip
        latencies["classify" if classify else "generate"].append(time.perf_counter() - began)
        done += 1
    elapsed = time.perf_counter() - start
    every = latencies["classify"] + latencies["generate"]
    return {
        "requests": done,
        "seconds": round(elapsed, 3),
        "throughput_rps": done / elapsed,
        "latency_s": {"all": percentiles(every)}
        | {k: percentiles(v) for k, v in latencies.items()},
    }


async def warm_up(url: str, prompts: list[str], text: str) -> dict[str, int]:
    """One classification per prompt (32 at a time), so each prefix is cached before the
    measured runs: a long-running server's steady state. → the status counts."""
    statuses: dict[str, int] = {}
    gate = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def one(prompt: str) -> None:
            async with gate:
                response = await client.post("/v1/classify", json={"model": prompt, "input": text})
            statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1

        await asyncio.gather(*(one(p) for p in prompts))
    return statuses


def run(load: Load) -> dict[str, Any]:
    return asyncio.run(run_load(load))


def summary(results: dict[str, Any], args: argparse.Namespace) -> str:
    sweep = results["sweep"]
    mixed, single, peft = results["mixed"], results["single"], results["peft"]
    lines = [
        "# lrpt serve load test",
        "",
        f"`python bench/serve_bench.py --prompts {args.prompts} --spread {args.spread} "
        f"--duration {args.duration} --seed {args.seed}`; {results['machine']}.",
        "",
        f"{args.prompts} registered prompts (copies of {len(results['sources'])} trained static "
        "MR prompt(s), one prefix each), "
        f"requests over {args.spread} of them (Zipf s={args.zipf}), "
        f"{int(args.classify_share * 100)} % classification of an MR test review, the rest "
        f"{args.max_tokens} greedy tokens; server started in {results['startup_s']:.0f} s.",
        "",
        "| run | clients | req/s | p50 s | p99 s | statuses |",
        "|---|---|---|---|---|---|",
    ]
    for r in sweep:
        lat = r["latency_s"]["all"]
        lines.append(f"| mixed | {r['concurrency']} | {r['throughput_rps']:.2f} | "
                     f"{lat['p50']:.3f} | {lat['p99']:.3f} | {r['statuses']} |")  # fmt: skip
    for label, r in [("single prompt", single), ("open loop, 70 % of peak", results["open"]),
                     ("overload", results["overload"])]:  # fmt: skip
        lat = r["latency_s"]["all"]
        clients = r["concurrency"] if r["concurrency"] else f"{r['rate']:.2f} req/s"
        p50, p99 = lat.get("p50", 0), lat.get("p99", 0)
        lines.append(f"| {label} | {clients} | {r['throughput_rps']:.2f} | {p50:.3f} | "
                     f"{p99:.3f} | {r['statuses']} |")  # fmt: skip
    alone = results["alone"]
    lat = alone["latency_s"]["all"]
    lines.append(f"| lrpt serve --max-batch 1 (no batching) | {args.clients} | "
                 f"{alone['throughput_rps']:.2f} | {lat['p50']:.3f} | {lat['p99']:.3f} | "
                 f"{alone['statuses']} |")  # fmt: skip
    lat = peft["latency_s"]["all"]
    rps = peft["throughput_rps"]
    lines.append(f"| PEFT, each request alone (in process, {peft['requests']} requests) | 1 | "
                 f"{rps:.3f} | {lat['p50']:.3f} | {lat['p99']:.3f} | - |")  # fmt: skip
    o = results["open"]["latency_s"]["all"]
    kinds = {k: v for k, v in results["open"]["latency_s"].items() if k != "all"}
    by_kind = ", ".join(
        f"{k} {v['p99'] / v['p50']:.2f} (p50 {v['p50']:.2f} s)" for k, v in kinds.items()
    )
    lines += [
        "",
        f"- mixed / single prompt throughput at {args.clients} clients: "
        f"{mixed['throughput_rps'] / single['throughput_rps']:.2f}×",
        f"- mixed / the same server without batching (--max-batch 1): "
        f"{mixed['throughput_rps'] / alone['throughput_rps']:.2f}×",
        f"- mixed / PEFT one request at a time: "
        f"{mixed['throughput_rps'] / peft['throughput_rps']:.1f}×",
        f"- warm-up (one classification per prompt, {args.spread} prefixes computed): "
        f"{results['warm_up']['seconds']:.0f} s",
        f"- open loop at 70 % of peak: p99 / p50 = {o['p99'] / o['p50']:.2f}; by kind: {by_kind}",
        f"- open loop: {results['open']['throughput_rps']:.2f} req/s served of "
        f"{results['open']['rate']:.2f} offered",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve")
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--spread", type=int, default=100)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--sweep", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--classify-share", type=float, default=0.5)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=8931)
    parser.add_argument(
        "--summarize", action="store_true", help="rewrite --out's summary.md from its results.json"
    )
    args = parser.parse_args()
    if args.summarize:
        results = json.loads((args.out / "results.json").read_text())
        (args.out / "summary.md").write_text(summary(results, args))
        return
    if args.duration > 120:
        raise SystemExit("each run is bounded: --duration ≤ 120 s")
    args.out.mkdir(parents=True, exist_ok=True)
    sources = static_sources()
    texts = mr_texts()
    url = f"http://127.0.0.1:{args.port}"
    results: dict[str, Any] = {
        "machine": machine_line(threads=True),
        "sources": [str(p.relative_to(ROOT)) for p in sources],
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        names = make_store(store, args.prompts, sources)
        began = time.perf_counter()
        proc = start_server(store, args.port, Path(tmp) / "server.log", args.max_batch)
        results["startup_s"] = time.perf_counter() - began
        try:
            served = served_prompts(url, {})
            prompts = served[: args.spread]

            def load(**kw: Any) -> Load:
                chosen = kw.pop("prompts", prompts)
                settings = {"concurrency": args.clients, "duration": args.duration,
                            "classify_share": args.classify_share, "max_tokens": args.max_tokens,
                            "zipf": args.zipf, "seed": args.seed} | kw  # fmt: skip
                return Load(url, chosen, texts, **settings)

            began = time.perf_counter()
            warm = asyncio.run(warm_up(url, prompts, texts[0]))
            results["warm_up"] = {"prompts": len(prompts), "seconds": time.perf_counter() - began,
                                  "statuses": warm}  # fmt: skip
            results["sweep"] = [run(load(concurrency=c)) for c in args.sweep]
            results["mixed"] = next(r for r in results["sweep"] if r["concurrency"] == args.clients)
            results["single"] = run(load(prompts=prompts[:1]))
            peak = max(r["throughput_rps"] for r in results["sweep"])
            results["open"] = run(load(rate=0.7 * peak))
            results["overload"] = run(load(concurrency=4 * (QUEUE + args.max_batch),
                                           duration=min(10.0, args.duration)))  # fmt: skip
            results["metrics"] = httpx.get(url + "/metrics").text
            results["refused"] = httpx.get(url + "/health").json()["refused"]
        finally:
            proc.terminate()
            proc.wait(timeout=120)
        # the same server handling one request at a time (--max-batch 1): prefixes cached, no
        # batching across requests
        proc = start_server(store, args.port, Path(tmp) / "alone.log", 1)
        try:
            asyncio.run(warm_up(url, prompts, texts[0]))
            results["alone"] = run(load(concurrency=args.clients))
        finally:
            proc.terminate()
            proc.wait(timeout=120)
        results["peft"] = peft_baseline(names, prompts, texts, args)
    metrics = results.pop("metrics")
    (args.out / "metrics.txt").write_text(
        "\n".join(line for line in metrics.splitlines()
                  if line.startswith(("lrpt_batch_size", "lrpt_prefix", "lrpt_prompts"))) + "\n"
    )  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = summary(results, args)
    (args.out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
