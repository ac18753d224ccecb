"""The options of ``lrpt bench --speed``, declared once: each field is one flag, with its default,
its help text (``{default}`` in it reads the default) and its check."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrpt.app.method_options import flag
from lrpt.methods import METHODS, unknown_method
from lrpt.placement import DTYPE_CHOICES


def _flag(help: str, **extra: Any) -> dict[str, Any]:
    """A field's metadata: its flag's help text and argparse extras (``choices``, ``type``)."""
    return {"help": help, **extra}


def method_keys(text: str) -> tuple[str, ...]:
    """``--methods``' comma-separated keys → a tuple."""
    return tuple(key for key in text.split(",") if key)


@dataclass(frozen=True)
class SpeedOptions:
    """What ``lrpt bench --speed`` measures and where (see :mod:`lrpt.app.bench.speed`).

    Raises:
        ValueError: an unknown method, or a count below 1 (named by its flag).
    """

    model: str = field(
        default="smollm2-135m", metadata=_flag("causal LM key or path (default {default})")
    )
    task: str = field(
        default="mr", metadata=_flag("task whose inputs are used (default {default})")
    )
    num_tokens: int = field(default=100, metadata=_flag("prompt length n (default {default})"))
    batch_size: int = field(default=16, metadata=_flag("default {default}"))
    rounds: int = field(
        default=3, metadata=_flag("alternating measurement rounds (default {default})")
    )
    methods: tuple[str, ...] = field(
        default=tuple(METHODS),
        metadata=_flag(
            "comma-separated methods to time against pt (default all)", type=method_keys
        ),
    )
    device: str = field(
        default="auto", metadata=_flag("{default} (default: CUDA if available), cpu, cuda:N, mps")
    )
    dtype: str = field(
        default="auto",
        metadata=_flag(
            "the frozen model's precision, for lrpt and PEFT alike (default {default}: float32 on "
            "CPU, bfloat16 on CUDA where supported)",
            choices=DTYPE_CHOICES,
        ),
    )
    against_dtype: str | None = field(
        default=None,
        metadata=_flag(
            "also time pt and PEFT on a second copy of the model in this precision, in the "
            "same rounds, and report the step-time ratio (e.g. --dtype bfloat16 --against-dtype "
            "float32)",
            choices=DTYPE_CHOICES,
        ),
    )
    naive: bool = field(
        default=False,
        metadata=_flag(
            "also time each static method without the shared prefix (its prompt run with "
            "every row, the papers' setting) against pt without it, beside the shared-prefix ratios"
        ),
    )
    out: Path | None = field(
        default=None, metadata=_flag("write the JSON report here (and .md beside it)")
    )

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(unknown_method(unknown, flag("methods")))
        for name in ("num_tokens", "batch_size", "rounds"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{flag(name)} must be ≥ 1, got {value}")

    @property
    def timed(self) -> list[str]:
        """The methods timed: :attr:`methods`, ``pt`` (the baseline) first where they lack it."""
        return list(self.methods) if "pt" in self.methods else ["pt", *self.methods]
