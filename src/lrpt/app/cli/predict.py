"""``lrpt predict``: run a trained prompt on texts given on the command line (or stdin).

Prints one prediction per text: the label name (classification), the value (regression) or,
for a generation that matches no label, the generated text. A text with a tab is a text pair.
"""

from __future__ import annotations

import argparse
import json
import sys

from lrpt.app.cli.engine_flags import add_engine_flags, on_engine, vllm_settings
from lrpt.app.cli.flags import add_family_argument, add_placement_flags, placement
from lrpt.app.data.examples import Example
from lrpt.app.data.objectives import make_objective
from lrpt.app.runs import load_trained, with_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, metavar="DIR", help="a trained prompt")
    parser.add_argument(
        "texts",
        nargs="+",
        metavar="TEXT",
        help="input texts ('-' reads one text per line from stdin; a tab separates a text pair)",
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="KEY_OR_PATH",
        help="the frozen model (default: the one named in the artifact)",
    )
    parser.add_argument("--encoder", default=None, metavar="KEY_OR_PATH")
    add_family_argument(parser)
    add_placement_flags(parser)
    parser.add_argument("--template", default=None, help="override the trained template")
    parser.add_argument("--verbalizer", default=None, metavar="LABEL=WORD,...")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    add_engine_flags(parser)


def read_texts(texts: list[str]) -> list[str]:
    out: list[str] = []
    for text in texts:
        if text == "-":
            out.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
        else:
            out.append(text)
    if not out:
        raise ValueError("no input texts")
    return out


def to_example(text: str) -> Example:
    """An unlabelled example; a tab splits a text pair."""
    first, tab, second = text.partition("\t")
    return Example(first, "", second if tab else None)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    engine = vllm_settings(args)
    texts = read_texts(args.texts)
    trained = load_trained(args.prompt, args.model, args.encoder, args.family, **placement(args))
    pm = trained.pm
    spec = with_overrides(trained.spec, args.template, args.verbalizer)
    objective = make_objective(spec, pm.tokenizer, pm.family, pm.model.config)
    objective = on_engine(objective, pm, engine)
    pm.eval()
    for start in range(0, len(texts), args.batch_size):
        chunk = texts[start : start + args.batch_size]
        examples = [to_example(t) for t in chunk]
        with torch.inference_mode():
            answers = objective.answers(pm, objective.collate(examples, golds=False))
        for text, answer in zip(chunk, answers, strict=True):
            print(json.dumps({"text": text, "prediction": answer}) if args.json else answer)
    return 0
