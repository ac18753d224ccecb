"""Export a static prompt as a standard PEFT prompt-tuning adapter, loadable without lrpt."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from transformers import PreTrainedModel

from lrpt.artifact.errors import ExportError
from lrpt.artifact.load import load_method
from lrpt.artifact.read import read_artifact
from lrpt.artifact.save import write_files
from lrpt.family import Family
from lrpt.fileio import atomic_dir
from lrpt.methods import method_class
from lrpt.methods.base import changes_input

PEFT_TASK_TYPES = {Family.CAUSAL: "CAUSAL_LM", Family.SEQ2SEQ: "SEQ_2_SEQ_LM"}


def exportable(meta: dict[str, Any]) -> str | None:
    """Why the artifact cannot become a PEFT prompt-tuning adapter, or None if it can."""
    key = meta["method"]
    cls = method_class(key)
    if not cls.static:
        return (
            f"method {key!r} is instance-dependent: its prompt is computed from each input by "
            "the input encoder, while a PEFT prompt-tuning adapter holds one fixed prompt"
        )
    if changes_input(cls):
        return (
            f"method {key!r} also adds a trained update to the input token embeddings, which a "
            "PEFT prompt-tuning adapter cannot hold; the prompt alone would change the outputs"
        )
    family = meta["model"]["family"]
    if family not in PEFT_TASK_TYPES:
        return (
            f"the prompt was trained on a {family} model: lrpt inserts it after [CLS] and trains "
            "the classification head, while PEFT prepends it before [CLS] and has no head; "
            f"only {' and '.join(PEFT_TASK_TYPES)} models export"
        )
    return None


def export_peft(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: PreTrainedModel | None = None,
    tokenizer: Any = None,
) -> Path:
    """Write the artifact's materialised prompt as a PEFT prompt-tuning adapter directory
    (``adapter_config.json`` + ``adapter_model.safetensors`` with key ``prompt_embeddings``),
    loadable with ``peft.PeftModel.from_pretrained(base_model, out)``.

    The adapter has ``num_transformer_submodules=1`` (the prompt goes before the encoder input
    only, as lrpt does; PEFT's seq2seq default of 2 would allocate an unused decoder copy).
    PEFT prepends the prompt before every token, while lrpt inserts it after a causal LM's BOS
    token: outputs agree exactly on inputs without BOS.

    ``model`` is needed only for methods whose frozen tensors derive from it (see
    :func:`load_method`).

    Raises:
        ExportError: instance-dependent method, input-embedding update, encoder-classifier
            prompt, or peft not installed.
        FileExistsError: ``out`` exists (nothing is written).
        ModelRequired: see :func:`load_method`.
    """
    root, target = Path(path), Path(out)
    meta = read_artifact(root)
    reason = exportable(meta)
    if reason:
        raise ExportError(f"cannot export {str(root)!r} as a PEFT adapter: {reason}")
    if target.exists() or target.is_symlink():
        raise FileExistsError(f"{str(target)!r} already exists; choose a new output directory")
    try:
        from peft import PromptTuningConfig
        from peft.utils import SAFETENSORS_WEIGHTS_NAME
    except ImportError:
        raise ExportError("exporting a PEFT adapter needs peft: pip install 'lrpt[peft]'") from None
    method = load_method(root, model=model, tokenizer=tokenizer)
    with torch.no_grad():
        prompt = method.materialise().detach().to("cpu", torch.float32).contiguous()  # (n, d)
    config = PromptTuningConfig(
        task_type=PEFT_TASK_TYPES[Family(meta["model"]["family"])],
        num_virtual_tokens=int(prompt.shape[0]),
        token_dim=int(prompt.shape[1]),
        num_transformer_submodules=1,
        base_model_name_or_path=meta["model"]["name"] or None,
        inference_mode=True,
    )
    weights = safetensors.torch.save({"prompt_embeddings": prompt}, metadata={"format": "pt"})
    with atomic_dir(target) as tmp:
        config.save_pretrained(str(tmp))
        write_files(tmp, {SAFETENSORS_WEIGHTS_NAME: weights})
    return target
