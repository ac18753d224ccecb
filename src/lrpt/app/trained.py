"""A trained prompt loaded onto its frozen model with its task format and input encoder.

One loader for every consumer of an artifact saved by ``lrpt train``: ``lrpt eval`` and
``lrpt predict`` (through :func:`lrpt.app.runs.load_trained`, which loads the model first) and
``lrpt serve``'s prompt store (the model already loaded, encoders shared between prompts).
"""

from __future__ import annotations

import os
from typing import Any

from lrpt.app.data.task_format import TaskSpec
from lrpt.artifact import load_prompt
from lrpt.methods import method_class
from lrpt.model import PromptedModel

# Input encoders of instance-dependent methods, and their output size k.
ENCODER_DIMS = {"tiny-bert": 64, "minilm-l6": 384}


def default_encoder(model_key: str) -> str:
    """The input encoder lrpt pairs with ``model_key``: tiny-bert for tiny models, else MiniLM."""
    return "tiny-bert" if model_key.startswith("tiny-") else "minilm-l6"


def load_encoder(
    method: str, model_key: str, encoder_key: str | None, device: Any = None
) -> tuple[Any, str | None]:
    """The input encoder an instance-dependent method needs (and its key), else (None, None).

    ``device``: where it runs (the frozen model's device); it stays float32 whatever the frozen
    model's dtype (it is small, and its output conditions the float32 prompt).
    """
    if method_class(method).static:
        if encoder_key is not None:
            raise ValueError(f"method {method!r} uses no input encoder: drop --encoder")
        return None, None
    from lrpt.base_models import load_model
    from lrpt.model import InputEncoder

    key = encoder_key or default_encoder(model_key)
    dtype = None if device is None else "float32"
    base = load_model(key, family="base", device=device, dtype=dtype)
    return InputEncoder(base.model, base.tokenizer), key


def trained_task(meta: dict[str, Any]) -> TaskSpec | None:
    """The task format ``lrpt train`` recorded in an artifact's metadata, if it did."""
    task = (meta.get("training") or {}).get("task")
    return TaskSpec.from_dict(task) if isinstance(task, dict) else None


def load_onto(
    path: str | os.PathLike,
    meta: dict[str, Any],
    model: Any,
    tokenizer: Any,
    model_key: str,
    *,
    encoder: str | None = None,
    device: Any = None,
    encoders: dict[str | None, Any] | None = None,
) -> PromptedModel:
    """The artifact at ``path`` (its metadata ``meta``) loaded and validated onto ``model``.

    An instance-dependent method gets its input encoder: ``encoder`` if given, else the one the
    artifact records, else :func:`default_encoder` of ``model_key``; placed on ``device``.
    ``encoders``: encoders loaded before, by key (filled here), so prompts share them.
    """
    if method_class(meta["method"]).static:
        load_encoder(meta["method"], model_key, encoder, device)  # refuses an --encoder
        return load_prompt(path, model, tokenizer)
    key = encoder or (meta.get("encoder") or {}).get("name")
    cache = encoders if encoders is not None else {}
    if key not in cache:
        cache[key] = load_encoder(meta["method"], model_key, key, device)[0]
    return load_prompt(path, model, tokenizer, encoder=cache[key])
