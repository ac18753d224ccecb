"""The method contract: what every prompt method is, builds from and produces.

A method is an ``nn.Module`` built from a frozen, validated config dataclass and the model's
dimensions (:class:`ModelDims`). Building allocates uninitialised tensors only (so ``lrpt params``
can build on the ``meta`` device without loading weights); :meth:`PromptMethod.init_weights`
initialises them from the frozen model's embeddings (:class:`InitContext`).

For a batch a method produces:

* ``prompt(batch_size, condition)`` → ``(1, n, d)`` for static methods, ``(B, n, d)`` for
  instance-dependent ones (``condition`` is the ``(B, k)`` pooled output of the input encoder);
* ``input_update(positions)`` → an additive ``(B, L, d)`` update of the input token embeddings, or
  ``None`` (``positions[b, j]`` is token ``j``'s index inside its own unpadded input, ``-1`` where
  the token gets no update);
* ``param_groups(lr)`` → optimizer groups (methods with two learning rates override it);
* ``materialise()`` → the plain ``(n, d)`` prompt, for static methods only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class ModelDims:
    """The frozen model's sizes a method needs: embedding dim ``d``, input-encoder dim ``k``."""

    embed_dim: int
    encoder_dim: int | None = None

    def __post_init__(self) -> None:
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim must be ≥ 1, got {self.embed_dim}")
        if self.encoder_dim is not None and self.encoder_dim < 1:
            raise ValueError(f"encoder_dim must be ≥ 1, got {self.encoder_dim}")


@dataclass
class InitContext:
    """What initialisation may read: the frozen embedding module, a seeded RNG, a tokenizer."""

    embedding: nn.Module
    generator: torch.Generator
    tokenizer: Any = None

    @property
    def vocab_size(self) -> int:
        return int(self.embedding.weight.shape[0])

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``token_ids`` through the module itself (some models scale inside it)."""
        weight = self.embedding.weight
        with torch.no_grad():
            out = self.embedding(token_ids.to(weight.device))
        return out.detach().float().cpu()


def check_positive(name: str, value: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int ≥ 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def check_nonneg_float(name: str, value: float) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a float ≥ 0."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a number ≥ 0, got {value!r}")


class PromptMethod(nn.Module):
    """Base class of every prompt method. Subclasses set the class attributes and override."""

    key: ClassVar[str]
    config_class: ClassVar[type]
    static: ClassVar[bool] = True  # False: the prompt depends on the input (needs an encoder)
    paper: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    param_formula: ClassVar[str] = ""

    def __init__(self, config: Any, dims: ModelDims) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        if not self.static and dims.encoder_dim is None:
            raise ValueError(f"method {self.key!r} needs an input encoder: encoder_dim is None")
        self.config = config
        self.dims = dims

    @property
    def num_tokens(self) -> int:
        """Number of prompt rows ``n`` this method inserts."""
        return int(self.config.num_tokens)

    def init_weights(self, ctx: InitContext) -> None:
        """Initialise every tensor (trainable and frozen) from ``ctx``."""
        raise NotImplementedError

    def prompt(self, batch_size: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The prompt rows: ``(1, n, d)`` if static, else ``(B, n, d)`` from ``condition (B, k)``"""
        if not self.static:
            raise NotImplementedError
        return self.materialise().unsqueeze(0)

    def materialise(self) -> torch.Tensor:
        """The plain ``(n, d)`` prompt of a static method."""
        raise TypeError(f"method {self.key!r} is instance-dependent: it has no single prompt")

    def input_update(self, positions: torch.Tensor) -> torch.Tensor | None:
        """Additive update of the input embeddings at ``positions (B, L)``; ``None`` for none."""
        return None

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; one group at ``lr`` unless a method needs more."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def extra_state(self) -> dict[str, Any]:
        """JSON-able facts an artifact stores beside the tensors (e.g. a projection fingerprint)"""
        return {}

    def trainable_tensors(self) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of the trainable tensors."""
        return {n: tuple(p.shape) for n, p in self.named_parameters() if p.requires_grad}

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def config_fields(config_class: type) -> dict[str, dataclasses.Field]:
    """The config dataclass's fields by name."""
    return {f.name: f for f in dataclasses.fields(config_class)}


def changes_input(method: type[PromptMethod] | PromptMethod) -> bool:
    """Whether the method adds an update to the input token embeddings (overrides
    :meth:`PromptMethod.input_update`, whose contract default is "no update")."""
    cls = method if isinstance(method, type) else type(method)
    return cls.input_update is not PromptMethod.input_update
