"""``lrpt export``: a static prompt artifact as a standard PEFT prompt-tuning adapter.

The adapter (``adapter_config.json`` + ``adapter_model.safetensors`` with the materialised
``n × d`` prompt under ``prompt_embeddings``) loads without lrpt:
``peft.PeftModel.from_pretrained(base_model, DIR)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lrpt.artifact import ModelRequired, export_peft, read_artifact
from lrpt.family import Family

FORMATS = ("peft",)

NOTES = """PEFT prepends the prompt before every token; lrpt inserts it after a causal LM's BOS
token. The adapter reproduces lrpt's outputs exactly on inputs without BOS
(tokenizer(..., add_special_tokens=False)). Refused: instance-dependent methods (lopa, idpg:
no single prompt), methods that also update the input embeddings (dept, ept), and prompts of
encoder classifiers (lrpt trains their head and inserts the prompt after [CLS])."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = NOTES
    parser.add_argument("path", metavar="PATH", help="a prompt artifact directory")
    parser.add_argument("--format", required=True, choices=FORMATS, help="output format")
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="the adapter directory to create (must not exist)",
    )
    parser.add_argument(
        "--model",
        metavar="KEY_OR_PATH",
        help="base model to check against; loaded anyway when the method's frozen "
        "tensors derive from it (default: the model named in the artifact)",
    )


def run(args: argparse.Namespace) -> int:
    meta = read_artifact(args.path)
    model = tokenizer = None
    if args.model is not None:
        model, tokenizer = _load(args.model)
    try:
        out = export_peft(args.path, args.out, model=model, tokenizer=tokenizer)
    except ModelRequired:
        model, tokenizer = _load(meta["model"]["name"], meta["model"]["family"])
        print(f"note: rebuilt the frozen tensors with base model {meta['model']['name']!r}")
        out = export_peft(args.path, args.out, model=model, tokenizer=tokenizer)
    files = ", ".join(sorted(p.name for p in Path(out).iterdir()))
    print(f"wrote PEFT prompt-tuning adapter {out} ({files})")
    if meta["model"]["family"] == Family.CAUSAL:
        print(
            "note: PEFT prepends the prompt before BOS; lrpt inserts it after BOS: outputs "
            "match on inputs tokenized without BOS (add_special_tokens=False)"
        )
    return 0


def _load(name: str, family: str | None = None) -> tuple:
    from lrpt.base_models import load_model

    loaded = load_model(name, family=family)
    return loaded.model, loaded.tokenizer
