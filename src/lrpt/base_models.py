"""Frozen base models by key or path: tiny seeded test models, real pretrained ones, local dirs.

``load_model(key_or_path)`` returns a :class:`LoadedModel` (model, tokenizer, family, name).
Families (:class:`~lrpt.family.Family`): ``causal`` (decoder-only LM), ``seq2seq``
(encoder-decoder LM), ``encoder`` (encoder with a sequence-classification head) and ``base``
(plain encoder, e.g. an input encoder).

The tiny models (``tiny-llama``, ``tiny-t5``, ``tiny-bert``) are randomly initialised from fixed
configs with a fixed seed, and use a byte-level tokenizer built in code, so they need no download.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers import models as tok_models
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from lrpt.family import Family
from lrpt.placement import resolve_device, resolve_dtype

FAMILIES = tuple(Family)
TINY_SEED = 1234
TINY_DIM = 64


@dataclass
class LoadedModel:
    """A frozen base model with its tokenizer, family and a name for artifacts (and, for a
    model from the Hub, the commit it was loaded at)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    family: Family
    name: str
    revision: str | None = None


def byte_tokenizer(specials: list[str], template: str, pair: str) -> Tokenizer:
    """A deterministic byte-level tokenizer: ``specials`` first, then the 256 byte symbols."""
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):  # sorted: sets are unordered
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(tok_models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    ids = [(s, vocab[s]) for s in specials]
    tok.post_processor = processors.TemplateProcessing(
        single=template, pair=pair, special_tokens=ids
    )
    return tok


def _tiny_llama(num_labels: int) -> LoadedModel:
    specials = ["<pad>", "<s>", "</s>"]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=byte_tokenizer(specials, "<s> $A", "<s> $A $B"),
        pad_token="<pad>", bos_token="<s>", eos_token="</s>", padding_side="left",
    )  # fmt: skip
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=TINY_DIM, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )  # fmt: skip
    return LoadedModel(_seeded(LlamaForCausalLM, config), tok, Family.CAUSAL, "tiny-llama")


def _tiny_t5(num_labels: int) -> LoadedModel:
    specials = ["<pad>", "</s>", "<unk>"]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=byte_tokenizer(specials, "$A </s>", "$A </s> $B </s>"),
        pad_token="<pad>", eos_token="</s>", unk_token="<unk>", padding_side="right",
    )  # fmt: skip
    config = T5Config(  # type: ignore[call-arg]  # accepted at run time, not in its signature
        vocab_size=len(tok), d_model=TINY_DIM, d_kv=16, d_ff=128, num_layers=2,
        num_decoder_layers=2, num_heads=4, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0, tie_word_embeddings=False,
    )  # fmt: skip
    return LoadedModel(_seeded(T5ForConditionalGeneration, config), tok, Family.SEQ2SEQ, "tiny-t5")


def _tiny_bert(num_labels: int, family: Family = Family.ENCODER) -> LoadedModel:
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=byte_tokenizer(specials, "[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1"),
        pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]",
        mask_token="[MASK]", padding_side="right",
    )  # fmt: skip
    config = BertConfig(  # type: ignore[call-arg]  # accepted at run time, not in its signature
        vocab_size=len(tok), hidden_size=TINY_DIM, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=1024, num_labels=num_labels, pad_token_id=0,
    )  # fmt: skip
    cls = BertModel if family == Family.BASE else BertForSequenceClassification
    return LoadedModel(_seeded(cls, config), tok, family, "tiny-bert")


def _seeded(cls: type[PreTrainedModel], config: Any) -> PreTrainedModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = cls(config)
    return model.eval()


TINY_MODELS: dict[str, Callable[..., LoadedModel]] = {
    "tiny-llama": _tiny_llama,
    "tiny-t5": _tiny_t5,
    "tiny-bert": _tiny_bert,
}
TINY_FAMILIES: dict[str, tuple[Family, ...]] = {
    "tiny-llama": (Family.CAUSAL,),
    "tiny-t5": (Family.SEQ2SEQ,),
    "tiny-bert": (Family.ENCODER, Family.BASE),
}


def model_keys() -> dict[str, str]:
    """Every model key lrpt knows, with a one-line description."""
    from lrpt.pretrained import PRETRAINED_MODELS

    keys = {k: f"tiny random test model ({'/'.join(v)})" for k, v in TINY_FAMILIES.items()}
    return keys | dict(PRETRAINED_MODELS)


def load_model(
    key_or_path: str | os.PathLike,
    *,
    family: str | None = None,
    num_labels: int = 2,
    revision: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """Load a frozen base model by key (see :func:`model_keys`), from a local HF directory, or
    by Hub id (``owner/name``, at ``revision``: a branch, tag or commit; default ``main``).

    A Hub id is looked up in the standard Hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``)
    first and downloaded only when it is not there and ``HF_HUB_OFFLINE`` is not set; the
    loaded model's ``revision`` is the commit it was loaded at.

    ``family`` (a :class:`Family` or its value) chooses the model class; by default the key's
    first family, or the one a local directory's ``config.json`` tells.

    ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; see :mod:`lrpt.placement`) and
    ``dtype`` (``auto``, ``float32``, ``bfloat16``, ``float16``) place the loaded model; None
    leaves it as loaded: on the CPU in float32. Only parameters are cast: float buffers (e.g.
    rotary frequencies) stay float32.

    Raises:
        ValueError: unknown key, missing path, a family the model cannot be, num_labels < 1, or
            a device this machine does not have.
    """
    if device is not None or dtype is not None:  # fail before loading anything
        where = resolve_device(device)
        precision = resolve_dtype(dtype, where)
        loaded = load_model(key_or_path, family=family, num_labels=num_labels, revision=revision)
        return place(loaded, where, precision)
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
    if num_labels < 1:
        raise ValueError(f"num_labels must be ≥ 1, got {num_labels}")
    key = str(key_or_path)
    if key in TINY_MODELS:
        allowed = TINY_FAMILIES[key]
        if family is not None and family not in allowed:
            raise ValueError(f"model {key!r} is a {'/'.join(allowed)} model, not {family!r}")
        if key == "tiny-bert":
            return _tiny_bert(num_labels, Family(family or Family.ENCODER))
        return TINY_MODELS[key](num_labels)
    from lrpt.pretrained import PRETRAINED_MODELS, load_pretrained

    if key in PRETRAINED_MODELS:
        model, tok = load_pretrained(key, family=family, num_labels=num_labels)
        return LoadedModel(model.eval(), tok, Family(family or _infer_family(model.config)), key)
    path = Path(key).expanduser()
    chosen = Family(family) if family is not None else None
    if path.exists():
        if revision is not None:
            raise ValueError(f"revision {revision!r} is for Hub ids; {key!r} is a local directory")
        return _load_local(path, chosen, num_labels)
    if HUB_ID.fullmatch(key):
        snapshot = hub_snapshot(key, revision)
        loaded = _load_local(snapshot, chosen, num_labels)
        return dataclasses.replace(loaded, name=key, revision=snapshot.name)
    known = ", ".join(model_keys())
    raise ValueError(
        f"unknown model {key!r}: tried the built-in keys ({known}) and a local directory "
        f"{str(path.resolve())!r}, which does not exist (a Hub id is owner/name)"
    )


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def hub_cache() -> Path:
    """The Hub cache directory, read from the environment when called."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (to anything but 0/false/no/off)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in (
        "",
        "0",
        "false",
        "no",
        "off",
    )


def hub_snapshot(repo_id: str, revision: str | None) -> Path:
    """The local snapshot directory of ``repo_id`` at ``revision`` (from the cache, or
    downloaded when allowed); a one-line ValueError naming the id and the cache otherwise."""
    from huggingface_hub import snapshot_download

    cache, offline = hub_cache(), hub_offline()
    wanted = f"{repo_id!r} at revision {revision or 'main'!r}"
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache,
                                      local_files_only=True))  # fmt: skip
    except (OSError, ValueError) as err:
        if offline:
            raise ValueError(
                f"model {wanted} is not in the Hub cache {str(cache)!r} and HF_HUB_OFFLINE is "
                f"set ({type(err).__name__})"
            ) from None
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache,
                                      allow_patterns=HUB_FILES))  # fmt: skip
    except (OSError, ValueError) as err:
        raise ValueError(
            f"model {wanted} is not in the Hub cache {str(cache)!r} and could not be "
            f"downloaded: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None


# what a model needs from a Hub repository: config, weights, tokenizer (no other formats)
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]


def place(loaded: LoadedModel, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """``loaded`` with its model moved to ``device`` and its floating parameters cast to
    ``dtype`` (buffers keep their dtype); in place, returned for convenience. On the CPU in
    bfloat16 or float16 the model's attention becomes transformers' eager one
    (:func:`cpu_half_attention`)."""
    model: torch.nn.Module = loaded.model
    model.to(device)
    for param in model.parameters():
        if param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
    if device.type == "cpu" and dtype in (torch.bfloat16, torch.float16):
        cpu_half_attention(model)
    return loaded


def cpu_half_attention(model: torch.nn.Module) -> None:
    """Switch ``model`` from PyTorch's fused attention (``sdpa``) to transformers' ``eager`` one,
    for a CPU in bfloat16 or float16; other implementations are left alone.

    Measured on SmolLM2-135M (2 threads, AVX-512 BF16, a ``pt`` training step of 16 MR inputs
    after a 100-token prompt): the fused kernel's backward took 420 ms of a 1.32 s bf16 step, 2.7×
    its float32 time, while eager attention's products run on the fast bf16 matmuls: the step
    takes 1.05 s (float32: 2.1 s either way), and inference is within 5 % of the fused kernel.
    The bf16 losses differ from the fused kernel's by rounding (under 2 % of float32's, as the
    thread count moves them; docs/results.md, "In bf16 the shared and naive paths")."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) == "sdpa":
        model.set_attn_implementation("eager")  # type: ignore[operator]


def _infer_family(config: object) -> Family:
    """The family of a model config: from ``architectures`` when it names a head, else from
    ``model_type`` through transformers' auto-class mappings (converted checkpoints often have
    no ``architectures``): encoder-decoder → seq2seq; a type with a masked-LM head (BERT,
    RoBERTa, …) → encoder; one with a causal-LM head → causal; one with only a sequence
    classification head → encoder."""
    from transformers.models.auto import modeling_auto as auto

    if getattr(config, "is_encoder_decoder", False):
        return Family.SEQ2SEQ
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return Family.CAUSAL
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return Family.ENCODER
    if any(a.endswith("Model") for a in archs):
        return Family.ENCODER
    model_type = getattr(config, "model_type", None)
    by_type = [
        (Family.SEQ2SEQ, auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES),
        (Family.ENCODER, auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES),
        (Family.CAUSAL, auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES),
        (Family.ENCODER, auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES),
    ]
    for family, mapping in by_type:
        if model_type in mapping:
            return family
    raise ValueError(
        f"cannot tell the family of this model: its config has architectures {archs} and "
        f"model_type {model_type!r}, which transformers maps to no causal-LM, seq2seq, "
        f"masked-LM or sequence-classification class; pass family= (--family) one of "
        f"{', '.join(FAMILIES)}"
    )


def _load_local(path: Path, family: Family | None, num_labels: int) -> LoadedModel:
    if not (path / "config.json").is_file():
        raise ValueError(f"{str(path)!r} is not a Hugging Face model directory: no config.json")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (ValueError, KeyError, OSError) as err:
        raise ValueError(f"{str(path)!r}: transformers cannot read its config.json: {err}") from err
    family = family or _infer_family(config)
    auto = {
        Family.CAUSAL: AutoModelForCausalLM,
        Family.SEQ2SEQ: AutoModelForSeq2SeqLM,
        Family.ENCODER: AutoModelForSequenceClassification,
        Family.BASE: AutoModel,
    }[family]
    kwargs = {"num_labels": num_labels} if family == Family.ENCODER else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)  # a newly created classification head is seeded
        model = auto.from_pretrained(path, local_files_only=True, dtype=torch.float32, **kwargs)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return LoadedModel(model.eval(), tok, family, path.name)
