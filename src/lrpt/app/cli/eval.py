"""``lrpt eval``: evaluate a trained prompt on a task split.

The prompt's artifact holds the task format it was trained with (labels, template, verbalizer,
objective); the model is the one named in the artifact unless ``--model`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from lrpt.app.cli.train import (
    add_data_arguments,
    add_family_argument,
    add_task_arguments,
    load_data,
)
from lrpt.app.data.datasets import TASKS, TaskData, load_task
from lrpt.app.data.tasks import TaskSpec, make_objective, parse_verbalizer, unescape

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
    add_family_argument(parser, trained=True)
    parser.add_argument(
        "--zero-shot", action="store_true", help="also evaluate the frozen model without the prompt"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_arguments(parser, required=False)
    add_task_arguments(parser)


@dataclasses.dataclass
class Loaded:
    """A trained prompt ready to run: the prompted model, its task spec and artifact metadata."""

    pm: Any
    spec: TaskSpec
    meta: dict[str, Any]


def load_trained(
    path: str | os.PathLike,
    model: str | None = None,
    encoder: str | None = None,
    family: str | None = None,
) -> Loaded:
    """Load the artifact at ``path`` onto its frozen model (or ``model``), with its task spec.

    ``family``, if given, must be the artifact's (the prompt was trained on that kind of model).
    """
    from lrpt.app.cli.params import default_encoder
    from lrpt.artifact import load_prompt, read_artifact
    from lrpt.base_models import load_model
    from lrpt.methods import method_class
    from lrpt.model import InputEncoder

    meta = read_artifact(path)
    task = (meta.get("training") or {}).get("task")
    if not isinstance(task, dict):
        raise ValueError(
            f"{str(path)!r} holds no task format (labels, template): it was not saved by lrpt train"
        )
    spec = TaskSpec.from_dict(task)
    trained_on = meta["model"]["family"]
    if family is not None and family != trained_on:
        raise ValueError(
            f"--family {family} contradicts the artifact: the prompt was trained on a "
            f"{trained_on} model"
        )
    source = model or meta["model"]["name"]
    num_labels = 1 if spec.regression else len(spec.labels)
    loaded = load_model(source, family=trained_on, num_labels=num_labels)
    enc = None
    if not method_class(meta["method"]).static:
        key = encoder or (meta.get("encoder") or {}).get("name") or default_encoder(source)
        base = load_model(key, family="base")
        enc = InputEncoder(base.model, base.tokenizer)
    pm = load_prompt(path, loaded.model, loaded.tokenizer, encoder=enc)
    return Loaded(pm, spec, meta)


def with_overrides(spec: TaskSpec, template: str | None, verbalizer: str | None) -> TaskSpec:
    """``spec`` with a ``--template`` / ``--verbalizer`` from the command line."""
    if template is not None:
        spec = dataclasses.replace(spec, template=unescape(template))
    if verbalizer is not None:
        spec = dataclasses.replace(spec, verbalizer=parse_verbalizer(verbalizer, spec.labels))
    return spec


def eval_data(args: argparse.Namespace, spec: TaskSpec) -> TaskData:
    """``--task``/``--data``, else the built-in task the prompt was trained on."""
    if args.task is None and args.data is None:
        if spec.name not in TASKS:
            raise ValueError(
                f"the prompt was trained on {spec.name!r}, not a built-in task: pass --data"
            )
        return load_task(spec.name)
    return load_data(args)


def run(args: argparse.Namespace) -> int:
    from lrpt.app.training.evaluate import Unprompted, evaluate, subset

    trained = load_trained(args.prompt, args.model, args.encoder, args.family)
    pm = trained.pm
    spec = with_overrides(trained.spec, args.template, args.verbalizer)
    task = eval_data(args, spec)
    if args.max_examples < 0:
        raise ValueError(f"--max-examples must be ≥ 0, got {args.max_examples}")
    examples = subset(getattr(task, args.split), args.max_examples or None)
    if not examples:
        raise ValueError(f"task {task.name!r} has no {args.split} examples")
    objective = make_objective(spec, pm.tokenizer, pm.family, pm.model.config)
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
