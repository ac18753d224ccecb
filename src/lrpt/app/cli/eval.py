"""``lrpt eval``: evaluate a trained prompt on a task split.

The prompt's artifact holds the task format it was trained with (labels, template, verbalizer,
objective); the model is the one named in the artifact unless ``--model`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from lrpt.app.cli.engine_flags import add_engine_flags, on_engine, vllm_settings
from lrpt.app.cli.flags import (
    add_family_argument,
    add_placement_flags,
    add_spec_flags,
    given_sections,
    placement,
)
from lrpt.app.data.objectives import make_objective
from lrpt.app.runs import eval_data, load_trained, with_overrides
from lrpt.app.spec import DataSpec, FormatSpec

SPLITS = ("train", "validation", "test")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, metavar="DIR", help="a trained prompt")
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument(
        "--max-examples",
        type=int,
        default=0,
        metavar="N",
        help="evaluate a fixed seeded sample of N examples (0 = all)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--model",
        default=None,
        metavar="KEY_OR_PATH",
        help="the frozen model (default: the one named in the artifact)",
    )
    parser.add_argument(
        "--encoder",
        default=None,
        metavar="KEY_OR_PATH",
        help="input encoder of instance-dependent methods",
    )
    add_family_argument(parser)
    add_placement_flags(parser)
    parser.add_argument(
        "--zero-shot", action="store_true", help="also evaluate the frozen model without the prompt"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_engine_flags(parser)
    add_spec_flags(parser, "data", DataSpec, "data (default: the task the prompt was trained on)")
    add_spec_flags(
        parser, "format", FormatSpec, "task format", skip=("objective", "max_input_tokens")
    )


def run(args: argparse.Namespace) -> int:
    from lrpt.app.training.evaluate import Unprompted, evaluate, subset

    engine = vllm_settings(args)
    if engine is not None and args.zero_shot:
        raise ValueError("--zero-shot runs on the own engine only: drop --engine vllm")
    trained = load_trained(args.prompt, args.model, args.encoder, args.family, **placement(args))
    pm = trained.pm
    given = given_sections(args)
    fmt = given.get("format", {})
    spec = with_overrides(trained.spec, fmt.get("template"), fmt.get("verbalizer"))
    task = eval_data(DataSpec(**given.get("data", {})), spec)
    if args.max_examples < 0:
        raise ValueError(f"--max-examples must be ≥ 0, got {args.max_examples}")
    examples = subset(getattr(task, args.split), args.max_examples or None)
    if not examples:
        raise ValueError(f"task {task.name!r} has no {args.split} examples")
    objective = make_objective(spec, pm.tokenizer, pm.family, pm.model.config)
    objective = on_engine(objective, pm, engine)
    desc = None if args.json else args.split
    metrics = evaluate(pm, objective, examples, batch_size=args.batch_size, desc=desc)
    result: dict[str, Any] = {
        "prompt": str(args.prompt),
        "task": task.name,
        "split": args.split,
        "examples": len(examples),
        "metric": spec.metric,
        "metrics": metrics,
    }
    if args.zero_shot:
        plain = Unprompted(pm.model, pm.family)
        result["zero_shot"] = evaluate(plain, objective, examples, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{task.name} {args.split} ({len(examples)} examples), prompt {args.prompt}")
    for name, value in metrics.items():
        zero = result.get("zero_shot", {}).get(name)
        print(f"  {name:<9} {value:.4f}" + (f"   zero-shot {zero:.4f}" if zero is not None else ""))
    return 0
