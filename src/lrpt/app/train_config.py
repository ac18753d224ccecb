"""The training options of a run spec (its ``[training]`` section): :class:`TrainConfig`.

Each option is declared once, here, with its default and help text; ``lrpt train``'s flags, spec
files and the benchmark suites' settings derive from these fields (:mod:`lrpt.app.spec`). The
training loop (:mod:`lrpt.app.training.loop`) reads a config resolved against the method's
defaults (:meth:`TrainConfig.resolved`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lrpt.app.fields import option, spec_section
from lrpt.methods.base import check_bool, check_positive


@spec_section
class TrainConfig:
    """Training hyper-parameters: each declared once, here; ``lrpt train``'s flags derive from
    these fields. ``None`` limits mean "all examples", ``patience`` None = off; ``lr``,
    ``head_lr``, ``weight_decay`` and ``warmup`` None = the method's default
    (:meth:`resolved`)."""

    steps: int = option("optimizer steps", default=100)
    batch_size: int = option("examples per micro-batch", default=16)
    grad_accum: int = option("micro-batches per step", default=1)
    lr: float | None = option("learning rate (default: per method)", default=None)
    head_lr: float | None = option("encoder classifiers' head learning rate", default=None)
    weight_decay: float | None = option("(default: per method)", default=None)
    warmup: float | None = option(
        "warmup as a fraction of the steps (default: per method)", default=None
    )
    max_grad_norm: float = option("gradient-norm clipping", default=1.0)
    eval_every: int = option("validate every N steps", default=25)
    eval_batch_size: int = option("examples per evaluation batch", default=32)
    max_eval_examples: int | None = option(
        "validation examples (a fixed seeded sample; 0 = all)", default=200, zero_is_none=True
    )
    max_test_examples: int | None = option(
        "test examples (a fixed seeded sample; 0 = all)", default=1000, zero_is_none=True
    )
    patience: int | None = option("stop after N validations without improvement", default=None)
    evaluate_test: bool = option(
        "evaluate the best checkpoint on the test split (and the zero-shot model); off "
        "(--no-evaluate-test), the test split is never read: for runs that select settings",
        default=True,
    )
    checkpoint_every: int = option("checkpoint every K steps", default=10, metavar="K")
    seed: int = option(
        "seeds torch, random, numpy, the data order and the method's initialisation",
        default=0, metavar="S",
    )  # fmt: skip
    gradient_checkpointing: bool = option(
        "recompute the frozen model's layer activations in the backward pass instead of "
        "keeping them: less memory for about one more forward pass per step; the shared "
        "prefix still runs once per batch",
        default=False,
    )
    share_prefix: bool = option(
        "run a static prompt on a causal LM once per batch and let every row attend to its "
        "keys/values; off (--no-share-prefix), every row runs the prompt, as PEFT does: "
        "more work, but one model pass instead of two, which a GPU at small batches can "
        "run faster (see docs/training.md)",
        default=True,
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
