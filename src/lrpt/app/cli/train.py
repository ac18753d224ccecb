"""``lrpt train``: train a prompt on a task (built-in or user data) and write ``OUT/``.

``OUT/prompt/`` is the trained prompt (an artifact), ``OUT/results.json`` the run's results (with
its run spec) and ``OUT/checkpoint.pt`` the last checkpoint, from which ``--resume`` continues a
killed run. The flags are derived from the run spec (:mod:`lrpt.app.spec`); ``--config FILE``
reads a spec from a TOML file, a JSON spec or a run's ``results.json``, and flags override it.

Under ``torchrun`` or ``accelerate launch`` every process runs this command and trains its rank
(``--batch-size`` is the global batch); rank 0 writes ``OUT/`` and prints the summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lrpt.app.cli.flags import (
    add_method_options,
    add_spec_flags,
    check_method_options,
    given_sections,
)
from lrpt.app.runs import train_spec
from lrpt.app.spec import (
    DataSpec,
    FormatSpec,
    MethodSpec,
    ModelSpec,
    RunSpec,
    merge,
    read_spec_file,
)
from lrpt.app.train_config import TrainConfig
from lrpt.app.training.distributed import DEFAULT_TIMEOUT, from_environment
from lrpt.app.training.outdir import PROMPT_DIR, RESULTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a run spec: a .toml file, a JSON spec or a run's results.json (flags override it)",
    )
    add_spec_flags(parser, "model", ModelSpec, "model")
    add_spec_flags(parser, "method", MethodSpec, "method")
    parser.add_argument("--out", default=argparse.SUPPRESS, metavar="DIR", help="output directory")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="the number of processes the launcher must have started (torchrun, accelerate "
        "launch): refuse to run with another",
    )
    parser.add_argument(
        "--fsdp",
        action="store_true",
        help="under a launcher: shard the frozen model's transformer blocks over the processes "
        "(FSDP2); the embeddings and the prompt stay replicated",
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="seconds a rank waits for the others before the run fails (default %(default)g)",
    )
    add_spec_flags(parser, "data", DataSpec, "data")
    add_spec_flags(parser, "format", FormatSpec, "task format")
    add_spec_flags(parser, "training", TrainConfig, "training (defaults: see docs/training.md)")
    add_method_options(parser)


def run_spec(args: argparse.Namespace) -> RunSpec:
    """The run spec of ``--config`` (if given) with the given flags over it."""
    where = f"--config {args.config!r}" if args.config else "lrpt train"
    spec = merge(read_spec_file(args.config) if args.config else {}, given_sections(args))
    if "out" in vars(args):
        spec["out"] = args.out
    for section, key, flag in (("model", "name", "--model"), ("method", "key", "--method")):
        if key not in spec.get(section, {}):
            raise ValueError(f"{where}: {flag} is required (or {key} in the config's [{section}])")
    method = dict(spec["method"])
    check_method_options(method.pop("key"), method)
    return RunSpec.from_dict(spec, where)


def run(args: argparse.Namespace) -> int:
    spec = run_spec(args)
    dist = from_environment(
        spec.model.device, processes=args.processes, timeout=args.dist_timeout, fsdp=args.fsdp
    )
    try:
        results = train_spec(spec, resume=args.resume, progress=not args.quiet, dist=dist)
    finally:
        dist.close()
    if dist.main:
        print(summary(results, Path(results["spec"]["out"])))
    return 0


def summary(results: dict[str, Any], out: Path) -> str:
    """A few lines: best validation, test vs zero-shot, where the outputs are."""
    metric = results["task"]["metric"]
    lines = [
        f"{results['method']} on {results['task']['name']}: {results['steps']} steps, "
        f"{results['seconds_per_step']:.2f} s/step, "
        f"{results['trainable_params']['total']:,} trainable parameters"
    ]
    if "distributed" in results:
        dist = results["distributed"]
        lines.append(
            f"{dist['processes']} processes ({dist['backend']}), "
            f"{dist['per_rank_batch_size']} examples per rank and micro-batch"
            + (", the frozen model's blocks sharded (FSDP)" if dist["fsdp"] else "")
        )
    path = results["prompt_path"]
    if path["shared_prefix"]:
        lines.append("prompt path: shared prefix ([BOS] + prompt once per batch)")
    else:
        lines.append(f"prompt path: with every row, no shared prefix ({path['reason']})")
    best = results["best_validation"]
    if best is not None:
        lines.append(f"best validation {metric} {best['value']:.4f} at step {best['step']}")
    if results["test"] is not None:
        line = f"test {metric} {results['test'][metric]:.4f}"
        if results["zero_shot_test"] is not None:
            line += f" (zero-shot {results['zero_shot_test'][metric]:.4f})"
        lines.append(line)
    lines.append(f"prompt: {out / PROMPT_DIR}  results: {out / RESULTS}")
    return "\n".join(lines)
