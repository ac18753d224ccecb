"""``lrpt train``: train a prompt on a task (built-in or user data) and write ``OUT/``.

``OUT/prompt/`` is the trained prompt (an artifact), ``OUT/results.json`` the run's results and
``OUT/checkpoint.pt`` the last checkpoint, from which ``--resume`` continues a killed run.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from lrpt.app.cli.flags import add_method_options, method_options, option_types
from lrpt.app.cli.params import default_encoder
from lrpt.app.data.datasets import METRICS, TASKS, TaskData, load_task, load_user_data
from lrpt.app.data.tasks import (
    DEFAULT_MAX_INPUT_TOKENS,
    check_max_input_tokens,
    make_objective,
    task_spec,
)
from lrpt.app.training.loop import Run, TrainConfig, check_out, method_defaults, train
from lrpt.family import Family
from lrpt.methods import METHODS, method_class
from lrpt.methods.base import config_fields

DEFAULTS = TrainConfig()


# --- arguments shared with lrpt eval -------------------------------------------------------


def add_data_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--task`` or ``--data`` (with its field and split options)."""
    group = parser.add_argument_group("data")
    source = group.add_mutually_exclusive_group(required=required)
    source.add_argument(
        "--task", choices=sorted(TASKS), metavar="TASK", help=f"a built-in task: {', '.join(TASKS)}"
    )
    source.add_argument(
        "--data",
        metavar="FILE",
        help="training data: .csv, .tsv, .jsonl or a save_to_disk directory",
    )
    group.add_argument("--text-field", default="text", metavar="NAME")
    group.add_argument("--text-pair-field", default=None, metavar="NAME")
    group.add_argument("--label-field", default="label", metavar="NAME")
    group.add_argument("--validation-data", default=None, metavar="FILE")
    group.add_argument("--test-data", default=None, metavar="FILE")
    group.add_argument(
        "--metric",
        choices=METRICS,
        default=None,
        help="the task metric of --data (default accuracy)",
    )


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """``--template`` and ``--verbalizer`` overrides."""
    group = parser.add_argument_group("task format")
    group.add_argument(
        "--template",
        default=None,
        help=r"input template with {text} (and {text_pair}); \n is a newline",
    )
    group.add_argument(
        "--verbalizer",
        default=None,
        metavar="LABEL=WORD,...",
        help="answer word per label, e.g. 'negative=terrible,positive=great'",
    )


def load_data(args: argparse.Namespace) -> TaskData:
    """The task named by ``--task`` or read from ``--data``."""
    if args.task is not None:
        for flag in ("validation_data", "test_data", "metric", "text_pair_field"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} goes with --data, not --task")
        return load_task(args.task)
    return load_user_data(
        args.data,
        text_field=args.text_field,
        text_pair_field=args.text_pair_field,
        label_field=args.label_field,
        validation=args.validation_data,
        test=args.test_data,
        metric=args.metric or "accuracy",
    )


def add_family_argument(parser: argparse.ArgumentParser, *, trained: bool = False) -> None:
    """``--family``: the model family when its config cannot tell (no ``architectures`` and a
    ``model_type`` transformers maps to several heads)."""
    parser.add_argument(
        "--family",
        choices=("causal", "seq2seq", "encoder"),
        default=None,
        help="the model's family when its config.json cannot tell"
        + (" (must match the artifact's)" if trained else " (default: inferred)"),
    )


def model_source(key_or_path: str) -> str:
    """A model key as given, or a local directory as an absolute path (recorded in results)."""
    from lrpt.base_models import model_keys

    if key_or_path in model_keys():
        return key_or_path
    path = Path(key_or_path).expanduser()
    return str(path.resolve()) if path.exists() else key_or_path


def load_encoder(method: str, model_key: str, encoder_key: str | None) -> tuple[Any, str | None]:
    """The input encoder an instance-dependent method needs (and its key), else (None, None)."""
    if method_class(method).static:
        if encoder_key is not None:
            raise ValueError(f"method {method!r} uses no input encoder: drop --encoder")
        return None, None
    from lrpt.base_models import load_model
    from lrpt.model import InputEncoder

    key = encoder_key or default_encoder(model_key)
    base = load_model(key, family="base")
    return InputEncoder(base.model, base.tokenizer), key


# --- lrpt train ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        metavar="KEY_OR_PATH",
        help="a model key (see lrpt params) or a local Hugging Face directory",
    )
    parser.add_argument(
        "--method",
        required=True,
        choices=sorted(METHODS),
        metavar="KEY",
        help=f"one of {', '.join(METHODS)}",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    parser.add_argument(
        "--encoder",
        default=None,
        metavar="KEY_OR_PATH",
        help="input encoder of instance-dependent methods "
        "(default: tiny-bert for tiny models, else minilm-l6)",
    )
    add_family_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_arguments(parser)
    add_task_arguments(parser)
    parser.add_argument(
        "--objective",
        choices=("classify", "generate"),
        default=None,
        help="classify: rank the verbalizer words (default for classification); "
        "generate: text-to-text with greedy decoding (default for regression); "
        "encoder models always train their classification head",
    )
    parser.add_argument(
        "--max-input-tokens",
        type=int,
        default=DEFAULT_MAX_INPUT_TOKENS,
        metavar="N",
        help="truncate the text so the filled template fits N tokens",
    )
    add_training_arguments(parser)
    add_method_options(parser)
    if "seed" not in option_types():  # else the method option --seed is the training seed too
        parser.add_argument(
            "--seed",
            dest="opt_seed",
            type=int,
            default=None,
            metavar="S",
            help="seeds torch, random, numpy, the data order and the method's "
            "initialisation (default 0)",
        )


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training (defaults: see docs/training.md)")
    add = group.add_argument
    add("--steps", type=int, default=DEFAULTS.steps, help="optimizer steps")
    add("--batch-size", type=int, default=DEFAULTS.batch_size, help="examples per micro-batch")
    add("--grad-accum", type=int, default=DEFAULTS.grad_accum, help="micro-batches per step")
    add("--lr", type=float, default=None, help="learning rate (default: per method)")
    add("--head-lr", type=float, default=None, help="encoder classifiers' head learning rate")
    add("--weight-decay", type=float, default=None)
    add("--warmup", type=float, default=None, help="warmup as a fraction of the steps")
    add("--max-grad-norm", type=float, default=DEFAULTS.max_grad_norm)
    add("--eval-every", type=int, default=DEFAULTS.eval_every, help="validate every N steps")
    add("--eval-batch-size", type=int, default=DEFAULTS.eval_batch_size)
    add(
        "--max-eval-examples",
        type=int,
        default=DEFAULTS.max_eval_examples,
        help="validation examples (a fixed seeded sample; 0 = all)",
    )
    add(
        "--max-test-examples",
        type=int,
        default=DEFAULTS.max_test_examples,
        help="test examples (a fixed seeded sample; 0 = all)",
    )
    add("--patience", type=int, default=None, help="stop after N validations without improvement")
    add("--checkpoint-every", type=int, default=DEFAULTS.checkpoint_every, metavar="K")


def train_config(args: argparse.Namespace, seed: int) -> TrainConfig:
    """The training config from the flags, per-method defaults filling the unset ones."""
    defaults = method_defaults(args.method)
    check_max_input_tokens(args.max_input_tokens)  # before any model or data is loaded

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return defaults[name] if value is None else value

    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=pick("lr"),
        head_lr=pick("head_lr"),
        weight_decay=pick("weight_decay"),
        warmup=pick("warmup"),
        max_grad_norm=args.max_grad_norm,
        eval_every=args.eval_every,
        eval_batch_size=args.eval_batch_size,
        max_eval_examples=args.max_eval_examples or None,
        max_test_examples=args.max_test_examples or None,
        patience=args.patience,
        checkpoint_every=args.checkpoint_every,
        seed=seed,
    )


def seed_and_options(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """The run's seed and the method's options; a method config field ``seed`` gets the seed."""
    seed = args.opt_seed if args.opt_seed is not None else 0
    rest = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "opt_seed"})
    options = method_options(args.method, rest)
    if "seed" in config_fields(method_class(args.method).config_class):
        options["seed"] = seed
    return seed, options


def run(args: argparse.Namespace) -> int:
    from lrpt.app.data.metrics import is_regression
    from lrpt.base_models import load_model
    from lrpt.model import prompt_model

    out = Path(args.out).expanduser()
    check_out(out, args.resume)  # fail before loading anything
    seed, options = seed_and_options(args)
    cfg = train_config(args, seed)
    method_class(args.method).config_class(**options)  # bad options fail before loading
    task = load_data(args)
    num_labels = 1 if is_regression(task.metric) else len(task.labels)
    loaded = load_model(args.model, family=args.family, num_labels=num_labels)
    if loaded.family != Family.ENCODER:  # only encoder classifiers have a head
        if args.head_lr is not None:
            raise ValueError(
                f"--head-lr is for encoder classifiers; {args.model!r} is {loaded.family}"
            )
        cfg = dataclasses.replace(cfg, head_lr=None)
    spec = task_spec(
        task,
        loaded.family,
        objective=args.objective,
        template=args.template,
        verbalizer=args.verbalizer,
        max_input_tokens=args.max_input_tokens,
    )
    objective = make_objective(spec, loaded.tokenizer, loaded.family, loaded.model.config)
    encoder, encoder_key = load_encoder(args.method, args.model, args.encoder)
    pm = prompt_model(
        args.method, loaded.model, loaded.tokenizer, encoder=encoder, seed=seed, **options
    )
    model = {"name": model_source(args.model), "family": loaded.family, "encoder": encoder_key}
    results = train(
        Run(pm, objective, task, cfg, out, model), resume=args.resume, progress=not args.quiet
    )
    print(summary(results, out))
    return 0


def summary(results: dict[str, Any], out: Path) -> str:
    """A few lines: best validation, test vs zero-shot, where the outputs are."""
    metric = results["task"]["metric"]
    lines = [
        f"{results['method']} on {results['task']['name']}: {results['steps']} steps, "
        f"{results['seconds_per_step']:.2f} s/step, "
        f"{results['trainable_params']['total']:,} trainable parameters"
    ]
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
    lines.append(f"prompt: {out / 'prompt'}  results: {out / 'results.json'}")
    return "\n".join(lines)
