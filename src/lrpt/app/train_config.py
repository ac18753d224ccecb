"""The training options of a run spec (its ``[training]`` section): :class:`TrainConfig`.

Each option is declared once, here, with its default and help text; ``lrpt train``'s flags, spec
files and the benchmark suites' settings derive from these fields (:mod:`lrpt.app.spec`). The
training loop (:mod:`lrpt.app.training.loop`) reads a config resolved against the method's
defaults (:meth:`TrainConfig.resolved`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lrpt.app.fields import describe
from lrpt.methods.base import check_bool, check_positive


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters: each declared once, here; ``lrpt train``'s flags derive from
    these fields. ``None`` limits mean "all examples", ``patience`` None = off; ``lr``,
    ``head_lr``, ``weight_decay`` and ``warmup`` None = the method's default
    (:meth:`resolved`)."""

    steps: int = field(default=100, metadata=describe("optimizer steps"))
    batch_size: int = field(default=16, metadata=describe("examples per micro-batch"))
    grad_accum: int = field(default=1, metadata=describe("micro-batches per step"))
    lr: float | None = field(default=None, metadata=describe("learning rate (default: per method)"))
    head_lr: float | None = field(
        default=None, metadata=describe("encoder classifiers' head learning rate")
    )
    weight_decay: float | None = field(default=None, metadata=describe("(default: per method)"))
    warmup: float | None = field(
        default=None, metadata=describe("warmup as a fraction of the steps (default: per method)")
    )
    max_grad_norm: float = field(default=1.0, metadata=describe("gradient-norm clipping"))
    eval_every: int = field(default=25, metadata=describe("validate every N steps"))
    eval_batch_size: int = field(default=32, metadata=describe("examples per evaluation batch"))
    max_eval_examples: int | None = field(
        default=200,
        metadata=describe(
            "validation examples (a fixed seeded sample; 0 = all)", zero_is_none=True
        ),
    )
    max_test_examples: int | None = field(
        default=1000,
        metadata=describe("test examples (a fixed seeded sample; 0 = all)", zero_is_none=True),
    )
    patience: int | None = field(
        default=None, metadata=describe("stop after N validations without improvement")
    )
    evaluate_test: bool = field(
        default=True,
        metadata=describe(
            "evaluate the best checkpoint on the test split (and the zero-shot model); off "
            "(--no-evaluate-test), the test split is never read: for runs that select settings"
        ),
    )
    checkpoint_every: int = field(default=10, metadata=describe("checkpoint every K steps",
                                                                 metavar="K"))  # fmt: skip
    seed: int = field(
        default=0,
        metadata=describe(
            "seeds torch, random, numpy, the data order and the method's initialisation",
            metavar="S",
        ),
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata=describe(
            "recompute the frozen model's layer activations in the backward pass instead of "
            "keeping them: less memory for about one more forward pass per step; the shared "
            "prefix still runs once per batch"
        ),
    )
    share_prefix: bool = field(
        default=True,
        metadata=describe(
            "run a static prompt on a causal LM once per batch and let every row attend to its "
            "keys/values; off (--no-share-prefix), every row runs the prompt, as PEFT does: "
            "more work, but one model pass instead of two, which a GPU at small batches can "
            "run faster (see docs/training.md)"
        ),
    )

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "eval_batch_size",
                     "checkpoint_every"):  # fmt: skip
            check_positive(name, getattr(self, name))
        for name in ("max_eval_examples", "max_test_examples", "patience"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be an integer ≥ 0, got {self.seed!r}")
        for name in ("evaluate_test", "share_prefix", "gradient_checkpointing"):
            check_bool(name, getattr(self, name))
        for name in ("lr", "head_lr", "max_grad_norm"):
            value = getattr(self, name)
            if value is not None and not _number(value) > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.weight_decay is not None and not _number(self.weight_decay) >= 0:
            raise ValueError(f"weight_decay must be ≥ 0, got {self.weight_decay}")
        if self.warmup is not None and not 0 <= _number(self.warmup) < 1:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")

    def resolved(self, defaults: dict[str, float], *, head: bool) -> TrainConfig:
        """Unset ``lr``/``weight_decay``/``warmup`` from ``defaults`` (the method's); ``head_lr``
        likewise when the model has a trainable head, else None."""

        def pick(name: str) -> float:
            value = getattr(self, name)
            return defaults[name] if value is None else value

        head_lr = pick("head_lr") if head else None
        return dataclasses.replace(
            self, lr=pick("lr"), weight_decay=pick("weight_decay"), warmup=pick("warmup"),
            head_lr=head_lr,
        )  # fmt: skip

    def value(self, name: str) -> float:
        """A resolved option's value (see :meth:`resolved`)."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"training option {name} is unset: resolve the config first")
        return float(value)


def _number(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)
