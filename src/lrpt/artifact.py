"""Save, load and export a trained prompt: a directory holding ``prompt.json`` and
``prompt.safetensors`` (format version 1). No pickle anywhere.

``prompt.json``:

* ``format_version`` (1), ``method`` (registry key), ``config`` (every field of the method's config
  dataclass), ``dims`` (:class:`~lrpt.methods.ModelDims`);
* ``init_seed``: the seed ``build_method`` initialised the method with. Frozen tensors that are
  derived from it (e.g. ``lopt2``'s vocab-initialised ``X0``) are rebuilt from it, never stored;
* ``model``: identity of the frozen base model: ``name``, ``family``, ``hidden_size``,
  ``vocab_size`` and ``embedding_sha256`` (SHA-256 of its float32 input-embedding matrix);
* ``encoder``: the same identity for the input encoder of instance-dependent methods, else null;
* ``extra``: the method's ``extra_state()`` (e.g. ULPT's projection seed and fingerprint);
* ``frozen``: ``{name: {shape, dtype, sha256}}`` of every frozen tensor of the method (buffers and
  parameters that do not train). They are regenerated on load and must match bit for bit;
* ``tensors``: ``{name: {shape, dtype}}`` of the stored tensors;
* ``training``: a JSON summary of the training run, or null.

``prompt.safetensors``: the trainable tensors only, as named by
:meth:`PromptedModel.trainable_state_dict` (``method.<name>``, and ``head.<name>`` for the
classification head of encoder models).

Loading validates everything and raises a specific :class:`ArtifactError` subclass whose message
names the artifact and what did not match (expected vs got). Writes are atomic: both files are
written into a temporary directory beside the target, which is then renamed into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel

from lrpt.errors import LrptError
from lrpt.methods import METHODS, InitContext, ModelDims, PromptMethod, make_config, method_class
from lrpt.methods.base import changes_input, config_fields
from lrpt.model import InputEncoder, PromptedModel, build_method, family_of

FORMAT_VERSION = 1
JSON_NAME = "prompt.json"
TENSORS_NAME = "prompt.safetensors"
FILES = (JSON_NAME, TENSORS_NAME)
PEFT_TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM"}
_IDENTITY_KEYS = {
    "name": str,
    "family": str,
    "hidden_size": int,
    "vocab_size": int,
    "embedding_sha256": str,
}
_TOP_KEYS = {
    "format_version": int,
    "method": str,
    "config": dict,
    "dims": dict,
    "init_seed": int,
    "model": dict,
    "encoder": (dict, type(None)),
    "extra": dict,
    "frozen": dict,
    "tensors": dict,
    "training": (dict, type(None)),
}
_ST_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
}


class ArtifactError(LrptError):
    """A prompt artifact is missing, malformed, or does not fit the model it is loaded on."""


class ArtifactNotFound(ArtifactError):
    """The artifact path does not exist."""


class NotAnArtifact(ArtifactError):
    """The path exists but is not an lrpt prompt artifact directory."""


class CorruptArtifact(ArtifactError):
    """A file of the artifact is unreadable: invalid JSON, truncated or empty safetensors, a
    missing key, or a tensor list that disagrees with the tensors stored."""


class FormatVersionError(ArtifactError):
    """The artifact's format version is not one this lrpt reads."""


class UnknownMethodError(ArtifactError):
    """The artifact's method key is not registered."""


class ConfigMismatch(ArtifactError):
    """The stored config has unknown, missing or invalid fields."""


class TensorMismatch(ArtifactError):
    """A stored tensor's name, shape or dtype is not what the method builds for these dims."""


class ModelMismatch(ArtifactError):
    """The base model (or input encoder) is not the one the prompt was trained on."""


class FrozenStateMismatch(ArtifactError):
    """A frozen tensor the method regenerates differs from the one the prompt was trained with."""


class ProjectionMismatch(FrozenStateMismatch):
    """The method's regenerated ``extra_state()`` (e.g. ULPT's projection fingerprint) differs
    from the stored one."""


class ModelRequired(ArtifactError):
    """The method's frozen tensors derive from the base model: it must be passed to rebuild them."""


class ExportError(ArtifactError):
    """The artifact cannot be exported to the requested format (the message says why)."""


# --------------------------------------------------------------------------- identities
def embedding_fingerprint(weight: torch.Tensor) -> str:
    """SHA-256 hex digest of ``weight``'s float32 bytes (row-major, native byte order)."""
    array = weight.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.sha256(array.tobytes()).hexdigest()


def _identity(
    name: str | None, family: str, vocab_size: int, hidden_size: int, sha: str
) -> dict[str, Any]:
    return {
        "name": name or "",
        "family": family,
        "hidden_size": int(hidden_size),
        "vocab_size": int(vocab_size),
        "embedding_sha256": sha,
    }


def model_identity(model: PreTrainedModel, name: str | None) -> dict[str, Any]:
    """``{name, family, hidden_size, vocab_size, embedding_sha256}`` of ``model``."""
    weight = model.get_input_embeddings().weight
    vocab, hidden = weight.shape
    return _identity(name, family_of(model), vocab, hidden, embedding_fingerprint(weight))


def encoder_identity(encoder: InputEncoder, name: str | None = None) -> dict[str, Any]:
    """The identity of an input encoder's model (name defaults to its ``name_or_path``)."""
    name = name or getattr(encoder.model.config, "name_or_path", "") or ""
    return model_identity(encoder.model, name)


# --------------------------------------------------------------------------- tensors
def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _spec(tensor: torch.Tensor) -> dict[str, Any]:
    return {"shape": list(tensor.shape), "dtype": _dtype_name(tensor.dtype)}


def _specs(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    return {name: _spec(t) for name, t in sorted(tensors.items())}


def frozen_tensors(method: PromptMethod) -> dict[str, torch.Tensor]:
    """The method's tensors that do not train (buffers, frozen parameters): never stored."""
    frozen = dict(method.named_buffers())
    frozen |= {n: p for n, p in method.named_parameters() if not p.requires_grad}
    return frozen


def frozen_specs(method: PromptMethod) -> dict[str, dict[str, Any]]:
    """``{name: {shape, dtype, sha256}}`` of :func:`frozen_tensors` (float32 bytes hashed)."""
    return {
        name: _spec(t) | {"sha256": embedding_fingerprint(t)}
        for name, t in sorted(frozen_tensors(method).items())
    }


# a JSON list of numbers laid out one per line by json.dumps(indent=...); newlines inside JSON
# strings are escaped, so this only ever matches structure
_NUMBER_LIST = re.compile(r"\[\s*\n\s*(-?[\d.eE+-]+(?:,\s*\n\s*-?[\d.eE+-]+)*)\s*\n\s*\]")


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats (NaN, ±inf) replaced by None: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_bytes(meta: dict[str, Any]) -> bytes:
    """Indented JSON with lists of numbers (shapes) kept on one line; strict (no NaN)."""
    try:
        text = json.dumps(meta, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise LrptError(f"artifact metadata is not plain JSON (training summary?): {err}") from None
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(re.split(r",\s*", m[1])) + "]", text)
    return (text + "\n").encode("utf-8")


def _metadata(
    method: PromptMethod,
    *,
    init_seed: int,
    model: dict[str, Any],
    encoder: dict[str, Any] | None,
    tensors: dict[str, torch.Tensor],
    training: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "method": method.key,
        "config": dataclasses.asdict(method.config),
        "dims": dataclasses.asdict(method.dims),
        "init_seed": int(init_seed),
        "model": model,
        "encoder": encoder,
        "extra": method.extra_state(),
        "frozen": frozen_specs(method),
        "tensors": _specs(tensors),
        "training": _finite(training),
    }


# --------------------------------------------------------------------------- atomic writes
def _is_replaceable(path: Path) -> bool:
    """An existing lrpt artifact, or an empty directory."""
    return (
        path.is_dir()
        and not path.is_symlink()
        and ((path / JSON_NAME).is_file() or not any(path.iterdir()))
    )


@contextlib.contextmanager
def _atomic_dir(target: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``target``; on success rename it to ``target``.

    An existing ``target`` raises ``FileExistsError`` unless ``overwrite`` (then the old directory
    is renamed away, the new one renamed in, and the old one deleted). On any error the temporary
    directory is removed and ``target`` is left as it was.
    """
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise FileExistsError(
                f"{str(target)!r} already exists; pass overwrite=True to replace it"
            )
        if not _is_replaceable(target):
            raise FileExistsError(
                f"{str(target)!r} exists and is not an lrpt prompt artifact: refusing to replace it"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            old = target.parent / f".{target.name}.{uuid.uuid4().hex}.old"
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------- save
def save_prompt(
    pm: PromptedModel,
    path: str | os.PathLike,
    *,
    model_name: str,
    training: dict[str, Any] | None = None,
    overwrite: bool = False,
    init_seed: int | None = None,
    encoder_name: str | None = None,
) -> Path:
    """Save ``pm``'s trainable tensors and everything needed to rebuild it as a directory.

    Args:
        pm: the prompted model (its method, head and, if instance-dependent, input encoder).
        path: the artifact directory to create.
        model_name: the base model's key or path, recorded in the artifact.
        training: a JSON-able summary of the training run (or None); NaN and ±inf are
            stored as null.
        overwrite: replace an existing artifact at ``path`` (atomically).
        init_seed: the ``seed`` the method was built with (default: the one ``build_method``
            recorded on it); frozen tensors derived from it are checked to regenerate before
            anything is written.
        encoder_name: the input encoder's key, recorded for instance-dependent methods.

    Returns:
        ``Path(path)``.

    Raises:
        FileExistsError: ``path`` exists (and not ``overwrite``) or is not an artifact.
        FrozenStateMismatch: the method's frozen tensors do not regenerate from ``init_seed``.
        LrptError: ``training`` or the method's extra state is not plain JSON.
    """
    target = Path(path)
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise FileExistsError(f"{str(target)!r} already exists; pass overwrite=True to replace it")
    method = pm.method
    if init_seed is None:
        init_seed = pm.method.init_seed if pm.method.init_seed is not None else 0
    _check_regenerates(pm, init_seed)
    tensors = {
        k: v.detach().to("cpu").contiguous().clone() for k, v in pm.trainable_state_dict().items()
    }
    encoder = None
    if not method.static and pm.encoder is not None:
        encoder = encoder_identity(pm.encoder, encoder_name)
    meta = _metadata(
        method,
        init_seed=init_seed,
        model=model_identity(pm.model, model_name),
        encoder=encoder,
        tensors=tensors,
        training=training,
    )
    meta_bytes = _json_bytes(meta)
    tensor_bytes = safetensors.torch.save(tensors)
    with _atomic_dir(target, overwrite=overwrite) as tmp:
        _write(tmp / TENSORS_NAME, tensor_bytes)
        _write(tmp / JSON_NAME, meta_bytes)
    return target


def _check_regenerates(pm: PromptedModel, init_seed: int) -> None:
    """Rebuild the method from ``init_seed``; its frozen state must equal ``pm.method``'s."""
    method = pm.method
    if not frozen_tensors(method) and not method.extra_state():
        return
    again = build_method(
        method.key,
        pm.model,
        pm.tokenizer,
        encoder=None if method.static else pm.encoder,
        seed=init_seed,
        **dataclasses.asdict(method.config),
    )
    have, rebuilt = frozen_specs(method), frozen_specs(again)
    differ = sorted(n for n in have if have[n] != rebuilt.get(n))
    if differ or _plain(method.extra_state()) != _plain(again.extra_state()):
        raise FrozenStateMismatch(
            f"method {method.key!r}: frozen state {', '.join(differ) or 'extra_state'} does not "
            f"regenerate from init_seed={init_seed}; pass save_prompt(init_seed=...) the seed the "
            "method was built with"
        )


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples → lists)."""
    return json.loads(json.dumps(value))


# --------------------------------------------------------------------------- read
def _artifact_dir(path: str | os.PathLike) -> Path:
    root = Path(path)
    if not root.exists():
        raise ArtifactNotFound(f"no prompt artifact at {str(root)!r}: no such file or directory")
    if not root.is_dir():
        raise NotAnArtifact(f"{str(root)!r} is a file, not a prompt artifact directory")
    if not (root / JSON_NAME).is_file():
        raise NotAnArtifact(
            f"{str(root)!r} is not a prompt artifact: it has no {JSON_NAME} "
            f"(an artifact holds {' and '.join(FILES)})"
        )
    if not (root / TENSORS_NAME).is_file():
        raise CorruptArtifact(f"{str(root)!r}: {TENSORS_NAME} is missing")
    return root


def _load_json(root: Path) -> dict[str, Any]:
    try:
        meta = json.loads((root / JSON_NAME).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptArtifact(f"{str(root / JSON_NAME)!r} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise CorruptArtifact(f"{str(root / JSON_NAME)!r} must hold a JSON object")
    return meta


def _check_types(where: str, data: dict[str, Any], keys: dict[str, Any]) -> None:
    missing = sorted(set(keys) - set(data))
    if missing:
        raise CorruptArtifact(f"{where} is missing key(s) {', '.join(missing)}")
    for key, kind in keys.items():
        value = data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CorruptArtifact(f"{where}: {key!r} has the wrong type ({type(value).__name__})")


def _check_tensor_list(where: str, listing: dict[str, Any]) -> None:
    for name, spec in listing.items():
        ok = isinstance(spec, dict) and isinstance(spec.get("dtype"), str)
        ok = ok and isinstance(spec.get("shape"), list)
        ok = ok and all(isinstance(s, int) and s >= 0 for s in spec["shape"])
        if not ok:
            raise CorruptArtifact(f"{where}: tensor entry {name!r} must be {{shape, dtype}}")


def _rebuild_config(root: Path, meta: dict[str, Any]) -> Any:
    key, stored = meta["method"], meta["config"]
    fields = config_fields(method_class(key).config_class)
    unknown, missing = sorted(set(stored) - set(fields)), sorted(set(fields) - set(stored))
    if unknown or missing:
        got = [f"unknown field(s) {', '.join(unknown)}"] if unknown else []
        got += [f"missing field(s) {', '.join(missing)}"] if missing else []
        raise ConfigMismatch(
            f"{str(root)!r}: config of method {key!r} has {' and '.join(got)}; "
            f"it takes: {', '.join(fields)}"
        )
    try:
        return make_config(key, **stored)
    except (ValueError, TypeError) as err:
        raise ConfigMismatch(f"{str(root)!r}: invalid config of method {key!r}: {err}") from None


def _dims(root: Path, meta: dict[str, Any]) -> ModelDims:
    try:
        dims = ModelDims(**meta["dims"])
    except (TypeError, ValueError) as err:
        raise CorruptArtifact(f"{str(root)!r}: invalid dims {meta['dims']}: {err}") from None
    if not method_class(meta["method"]).static and dims.encoder_dim is None:
        raise CorruptArtifact(
            f"{str(root)!r}: method {meta['method']!r} is instance-dependent but dims has no "
            "encoder_dim"
        )
    return dims


def read_artifact(path: str | os.PathLike) -> dict[str, Any]:
    """The validated ``prompt.json`` of the artifact at ``path`` (tensors are not read).

    Checks: the directory and both files exist, the JSON parses and has every key with the
    right type, the format version is known, the method is registered, the config rebuilds
    (no unknown, missing or invalid field) and the dims are valid.

    Raises:
        ArtifactNotFound, NotAnArtifact, CorruptArtifact, FormatVersionError,
        UnknownMethodError, ConfigMismatch (all :class:`ArtifactError`).
    """
    root = _artifact_dir(path)
    meta = _load_json(root)
    where = repr(str(root / JSON_NAME))
    version = meta.get("format_version")
    if version is None:
        raise CorruptArtifact(f"{where} has no format_version")
    if version != FORMAT_VERSION:
        raise FormatVersionError(
            f"{where}: format_version {version!r} is not supported; this lrpt reads version "
            f"{FORMAT_VERSION}"
        )
    _check_types(where, meta, _TOP_KEYS)
    _check_types(f"{where} model", meta["model"], _IDENTITY_KEYS)
    if meta["encoder"] is not None:
        _check_types(f"{where} encoder", meta["encoder"], _IDENTITY_KEYS)
    _check_tensor_list(where, meta["tensors"])
    if meta["method"] not in METHODS:
        raise UnknownMethodError(
            f"{where}: unknown method {meta['method']!r}; known methods: {', '.join(METHODS)}"
        )
    _rebuild_config(root, meta)
    _dims(root, meta)
    return meta


def read_tensors(
    path: str | os.PathLike, meta: dict[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """The stored tensors (on CPU), checked against the listing in ``prompt.json``.

    Raises:
        CorruptArtifact: the safetensors file is empty, truncated or unreadable, or holds other
            tensors (names, shapes, dtypes) than ``prompt.json`` lists.
    """
    root = Path(path)
    meta = read_artifact(root) if meta is None else meta
    file = root / TENSORS_NAME
    try:
        tensors = safetensors.torch.load(file.read_bytes())
    except (SafetensorError, OSError) as err:
        size = file.stat().st_size if file.exists() else 0
        raise CorruptArtifact(
            f"{str(file)!r} is not a readable safetensors file ({size} bytes): {err}"
        ) from None
    stored, listed = _specs(tensors), dict(sorted(meta["tensors"].items()))
    if stored != listed:
        raise CorruptArtifact(
            f"{str(file)!r} holds tensors {_describe(stored)} but {JSON_NAME} lists "
            f"{_describe(listed)}"
        )
    return tensors


def _describe(specs: dict[str, dict[str, Any]]) -> str:
    return "{" + ", ".join(f"{n}: {tuple(s['shape'])} {s['dtype']}" for n, s in specs.items()) + "}"


# --------------------------------------------------------------------------- checks
def _check_tensors(root: Path, key: str, got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Stored tensor specs ``got`` must equal what the method (and head) build: ``expected``."""
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        raise TensorMismatch(
            f"{str(root)!r}: method {key!r} with this config trains tensors "
            f"{', '.join(expected)}; the artifact is missing {missing} and has unexpected {extra}"
        )
    for name in expected:
        have, want = got[name], expected[name]
        if have["shape"] != want["shape"]:
            raise TensorMismatch(
                f"{str(root)!r}: tensor {name!r} has shape {tuple(have['shape'])}, but method "
                f"{key!r} with this config builds {tuple(want['shape'])}"
            )
        if have["dtype"] != want["dtype"]:
            raise TensorMismatch(
                f"{str(root)!r}: tensor {name!r} has dtype {have['dtype']}, but method {key!r} "
                f"on this model builds {want['dtype']}"
            )


def _identity_diff(stored: dict[str, Any], actual: dict[str, Any], keys: list[str]) -> list[str]:
    return [
        f"{k}: trained on {stored[k]!r}, got {actual[k]!r}" for k in keys if stored[k] != actual[k]
    ]


def _check_model(
    root: Path, meta: dict[str, Any], model: PreTrainedModel, *, model_name: str | None, check: bool
) -> None:
    stored = meta["model"]
    actual = model_identity(model, model_name)
    if actual["hidden_size"] != meta["dims"]["embed_dim"]:
        raise ModelMismatch(
            f"{str(root)!r}: the prompt has embedding size {meta['dims']['embed_dim']}, but the "
            f"model's embeddings have size {actual['hidden_size']}"
        )
    if not check:
        return
    keys = ["family", "hidden_size", "vocab_size", "embedding_sha256"]
    diff = _identity_diff(stored, actual, (["name"] if model_name is not None else []) + keys)
    if diff:
        raise ModelMismatch(
            f"{str(root)!r} was trained on model {stored['name']!r}, not this one: "
            f"{'; '.join(diff)} (check_model=False skips this check)"
        )


def _check_encoder(
    root: Path, meta: dict[str, Any], encoder: InputEncoder | None, *, check: bool
) -> None:
    key, k = meta["method"], meta["dims"]["encoder_dim"]
    stored = meta["encoder"] or {}
    if encoder is None:
        raise ModelMismatch(
            f"{str(root)!r}: method {key!r} is instance-dependent: pass encoder= (trained with "
            f"encoder {stored.get('name', '')!r}, hidden size {k})"
        )
    if encoder.dim != k:
        raise ModelMismatch(
            f"{str(root)!r}: method {key!r} was trained with an encoder of hidden size {k}, "
            f"got {encoder.dim}"
        )
    if check and stored:
        diff = _identity_diff(
            stored, encoder_identity(encoder), ["hidden_size", "embedding_sha256"]
        )
        if diff:
            raise ModelMismatch(
                f"{str(root)!r} was trained with input encoder {stored['name']!r}, not this one: "
                f"{'; '.join(diff)} (check_model=False skips this check)"
            )


def _frozen_matches(meta: dict[str, Any], method: PromptMethod) -> bool:
    return _plain(method.extra_state()) == meta["extra"] and frozen_specs(method) == meta["frozen"]


def _check_frozen(root: Path, meta: dict[str, Any], method: PromptMethod) -> None:
    """The rebuilt method's extra state and frozen tensors must equal the stored ones."""
    key, stored, extra = meta["method"], meta["extra"], _plain(method.extra_state())
    if extra != stored:
        diff = [
            f"{k}: stored {stored.get(k)!r}, regenerated {extra.get(k)!r}"
            for k in sorted(set(stored) | set(extra))
            if stored.get(k) != extra.get(k)
        ]
        raise ProjectionMismatch(
            f"{str(root)!r}: method {key!r} regenerates frozen state that differs from the one "
            f"the prompt was trained with ({'; '.join(diff)}); the prompt would silently differ"
        )
    have, want = frozen_specs(method), meta["frozen"]
    differ = sorted(n for n in set(have) | set(want) if have.get(n) != want.get(n))
    if differ:
        detail = "; ".join(f"{n}: stored {want.get(n)}, regenerated {have.get(n)}" for n in differ)
        raise FrozenStateMismatch(
            f"{str(root)!r}: method {key!r} regenerates frozen tensor(s) that differ from the "
            f"ones the prompt was trained with ({detail}); the prompt would silently differ"
        )


# --------------------------------------------------------------------------- load
def load_prompt(
    path: str | os.PathLike,
    model: PreTrainedModel,
    tokenizer: Any,
    *,
    encoder: InputEncoder | None = None,
    model_name: str | None = None,
    check_model: bool = True,
) -> PromptedModel:
    """Rebuild the prompted model saved at ``path`` on the frozen ``model``.

    Validates the artifact (see :func:`read_artifact`), the model identity (family, hidden and
    vocab size, embedding fingerprint, and ``model_name`` if given; ``check_model=False`` keeps
    only the hidden-size check), the input encoder of instance-dependent methods, the frozen
    state the method regenerates (``extra_state()`` and frozen-tensor fingerprints) and every
    stored tensor's name, shape and dtype; then loads the tensors.

    Raises:
        ArtifactError: one of its subclasses, naming the path and what did not match.
    """
    root = Path(path)
    meta = read_artifact(root)
    tensors = read_tensors(root, meta)
    key = meta["method"]
    static = method_class(key).static
    _check_model(root, meta, model, model_name=model_name, check=check_model)
    if not static:
        _check_encoder(root, meta, encoder, check=check_model)
    method = build_method(
        key,
        model,
        tokenizer,
        encoder=None if static else encoder,
        seed=meta["init_seed"],
        **meta["config"],
    )
    _check_frozen(root, meta, method)
    pm = PromptedModel(model, tokenizer, method, encoder=None if static else encoder)
    _check_tensors(root, key, _specs(tensors), _specs(pm.trainable_state_dict()))
    pm.load_trainable_state_dict(tensors)
    return pm


def _stand_in_embedding(vocab_size: int, dim: int) -> nn.Embedding:
    """A zero embedding of the base model's shape (no memory beyond one row)."""
    return nn.Embedding.from_pretrained(torch.zeros(1, dim).expand(max(vocab_size, 1), dim))


def _rebuild(
    meta: dict[str, Any], config: Any, dims: ModelDims, embedding: nn.Module, tokenizer: Any
) -> PromptMethod:
    with torch.device("cpu"):
        method = method_class(meta["method"])(config, dims)
    ctx = InitContext(
        embedding=embedding,
        generator=torch.Generator().manual_seed(meta["init_seed"]),
        tokenizer=tokenizer,
    )
    method.init_weights(ctx)
    return method


def load_method(
    path: str | os.PathLike,
    *,
    model: PreTrainedModel | None = None,
    tokenizer: Any = None,
) -> PromptMethod:
    """The artifact's method on CPU with its stored tensors, to materialise or export a prompt
    without serving it (no ``PromptedModel``, no input encoder, head tensors ignored).

    Without ``model``, frozen tensors are regenerated with a stand-in for the base model (a zero
    embedding of its shape) and must match the stored fingerprints: true for methods whose
    frozen state comes from the config alone (e.g. ULPT's seeded projection). Methods whose
    frozen tensors derive from the model's embeddings (e.g. ``lopt2``'s ``X0``) raise
    :class:`ModelRequired`; pass ``model`` (checked against the stored identity) to rebuild them.

    Raises:
        ModelRequired: the frozen state needs the base model and none was given.
        ArtifactError: any other mismatch (see :func:`load_prompt`).
    """
    root = Path(path)
    meta = read_artifact(root)
    tensors = read_tensors(root, meta)
    key, config, dims = meta["method"], _rebuild_config(root, meta), _dims(root, meta)
    if model is not None:
        _check_model(root, meta, model, model_name=None, check=True)
        method = _rebuild(meta, config, dims, model.get_input_embeddings(), tokenizer)
        _check_frozen(root, meta, method)
    elif not meta["frozen"] and not meta["extra"]:
        with torch.device("cpu"):
            method = method_class(key)(config, dims)  # every tensor is loaded below
    else:
        method = _rebuild_offline(root, meta, config, dims)
    own = {f"method.{n}": p for n, p in method.named_parameters() if p.requires_grad}
    stored = {n: t for n, t in tensors.items() if not n.startswith("head.")}
    _check_tensors(root, key, _specs(stored), _specs(own))
    with torch.no_grad():
        for name, param in own.items():
            param.copy_(stored[name])
    return method.eval()


def _rebuild_offline(
    root: Path, meta: dict[str, Any], config: Any, dims: ModelDims
) -> PromptMethod:
    stand_in = _stand_in_embedding(meta["model"]["vocab_size"], dims.embed_dim)
    try:
        method = _rebuild(meta, config, dims, stand_in, tokenizer=None)
    except Exception:  # initialisation needs the real model (e.g. its tokenizer or embeddings)
        method = None
    if method is None or not _frozen_matches(meta, method):
        raise ModelRequired(
            f"{str(root)!r}: the frozen state of method {meta['method']!r} "
            f"({', '.join(meta['frozen']) or 'extra_state'}) derives from the base model "
            f"{meta['model']['name']!r}: load it with the model"
        )
    return method


# --------------------------------------------------------------------------- sizes
def _safetensors_size(specs: dict[str, dict[str, Any]]) -> int:
    """Exact size of a safetensors file holding float tensors ``{name: {shape, dtype}}``
    without metadata: 8-byte length + JSON header (space-padded to a multiple of 8) + data."""
    header, offset = {}, 0
    for name in sorted(specs):  # safetensors orders tensors of one dtype by name
        dtype = getattr(torch, specs[name]["dtype"])
        nbytes = math.prod(specs[name]["shape"]) * dtype.itemsize
        header[name] = {
            "dtype": _ST_DTYPES[dtype],
            "shape": specs[name]["shape"],
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    text = json.dumps(header, separators=(",", ":"))
    return 8 + len(text) + (-len(text)) % 8 + offset


def artifact_bytes(
    key: str,
    dims: ModelDims,
    config: Any,
    *,
    model_name: str = "",
    vocab_size: int = 0,
    training: dict[str, Any] | None = None,
) -> int:
    """Bytes on disk (both files) of an artifact of method ``key`` with ``config`` on ``dims``,
    computed without training or a model: exact for that model name, vocab size and training
    summary; a classification head (encoder models) is not included.
    """
    with torch.device("cpu"):
        method = method_class(key)(config, dims)  # uninitialised: only shapes and lengths matter
    tensors = {f"method.{n}": p for n, p in method.named_parameters() if p.requires_grad}
    model = _identity(model_name, "causal", vocab_size, dims.embed_dim, "0" * 64)
    encoder = None
    if dims.encoder_dim is not None and not method.static:
        encoder = _identity("", "encoder", 0, dims.encoder_dim, "0" * 64)
    meta = _metadata(
        method, init_seed=0, model=model, encoder=encoder, tensors=tensors, training=training
    )
    return len(_json_bytes(meta)) + _safetensors_size(_specs(tensors))


def artifact_size(path: str | os.PathLike) -> dict[str, int]:
    """``{file name: bytes}`` of the artifact's files, plus ``total``."""
    root = _artifact_dir(path)
    sizes = {name: (root / name).stat().st_size for name in FILES}
    return sizes | {"total": sum(sizes.values())}


# --------------------------------------------------------------------------- export
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
        task_type=PEFT_TASK_TYPES[meta["model"]["family"]],
        num_virtual_tokens=int(prompt.shape[0]),
        token_dim=int(prompt.shape[1]),
        num_transformer_submodules=1,
        base_model_name_or_path=meta["model"]["name"] or None,
        inference_mode=True,
    )
    weights = safetensors.torch.save({"prompt_embeddings": prompt}, metadata={"format": "pt"})
    with _atomic_dir(target) as tmp:
        config.save_pretrained(str(tmp))
        _write(tmp / SAFETENSORS_WEIGHTS_NAME, weights)
    return target


__all__ = [
    "FILES",
    "FORMAT_VERSION",
    "ArtifactError",
    "ArtifactNotFound",
    "ConfigMismatch",
    "CorruptArtifact",
    "ExportError",
    "FormatVersionError",
    "FrozenStateMismatch",
    "ModelMismatch",
    "ModelRequired",
    "NotAnArtifact",
    "ProjectionMismatch",
    "TensorMismatch",
    "UnknownMethodError",
    "artifact_bytes",
    "artifact_size",
    "changes_input",
    "export_peft",
    "exportable",
    "load_method",
    "load_prompt",
    "read_artifact",
    "read_tensors",
    "save_prompt",
]
