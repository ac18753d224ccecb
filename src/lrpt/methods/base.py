"""The method contract: what every prompt method is, builds from and produces.

A method is an ``nn.Module`` built from a frozen, validated config dataclass and the model's
dimensions (:class:`ModelDims`). Building allocates uninitialised tensors only (so ``lrpt params``
can build on the ``meta`` device without loading weights); :meth:`PromptMethod.init_weights`
initialises them from the frozen model's embeddings and a seeded generator (:class:`InitContext`)
through the method's :meth:`PromptMethod.init_tensors`.

For a batch a method produces:

* ``prompt(batch_size, condition)`` → ``(1, n, d)`` for static methods, ``(B, n, d)`` for
  instance-dependent ones (``condition`` is the ``(B, k)`` pooled output of the input encoder);
* ``input_update(positions)`` → an additive ``(B, L, d)`` update of the input token embeddings, or
  ``None`` (``positions[b, j]`` is token ``j``'s index inside its own unpadded input, ``-1`` where
  the token gets no update);
* ``param_groups(lr)`` → optimizer groups (methods with two learning rates override it);
* ``materialise()`` → the plain ``(n, d)`` prompt, for static methods only.

Frozen state: tensors that do not train (buffers, frozen parameters) are never stored in an
artifact. :meth:`PromptMethod.init_tensors` must rebuild them bit for bit from the config, the
dims, the frozen embeddings and the init generator alone; :meth:`PromptMethod.init_weights`
records that generator's seed as :attr:`PromptMethod.init_seed`, which artifacts store to
regenerate and check them. :meth:`PromptMethod.extra_state` adds JSON facts to check (e.g. ULPT's
projection seed and fingerprint).

Each method class also declares its trainer defaults (:class:`TrainingDefaults`), which the CLI
uses for the flags not given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar, final

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
    """What initialisation may read: the frozen embedding module, a seeded RNG, a tokenizer.

    ``generator`` must be fresh (nothing drawn from it yet) for the frozen state to regenerate
    from :attr:`seed`. It is a CPU generator and initialisation computes on the CPU, so a seed
    gives the same tensors bit for bit whatever device the model is on.

    ``embedding_dtype``: when set, :meth:`embed` rounds the embeddings to it, as a copy of the
    model in that dtype gives them (a prompt trained on a bfloat16 copy, rebuilt on a float32
    one, regenerates its frozen state exactly).
    """

    embedding: nn.Module
    generator: torch.Generator
    tokenizer: Any = None
    embedding_dtype: torch.dtype | None = None  # read embeddings rounded to it (see embed)

    @property
    def seed(self) -> int:
        """The seed ``generator`` was created with (``torch.Generator().manual_seed(seed)``
        reproduces a fresh one)."""
        return int(self.generator.initial_seed())

    @property
    def weight(self) -> torch.Tensor:
        """The embedding matrix ``(V, d)``."""
        weight = self.embedding.weight
        if not isinstance(weight, torch.Tensor):
            raise TypeError(f"the embedding module's weight is not a tensor: {type(weight)}")
        return weight

    @property
    def vocab_size(self) -> int:
        return int(self.weight.shape[0])

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``token_ids`` through the module itself (some models scale inside it)."""
        with torch.no_grad():
            out = self.embedding(token_ids.to(self.weight.device))
        if self.embedding_dtype is not None:
            out = out.to(self.embedding_dtype)
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


def check_positive_float(name: str, value: float) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a number > 0."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


def check_probability(name: str, value: float) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a number in [0, 1)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


def check_bool(name: str, value: bool) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


class MethodConfig(Protocol):
    """What a method config is: a frozen dataclass with ``num_tokens`` that validates its fields
    in ``__post_init__`` (``ValueError`` naming the field and the value).

    Field types are ``int``, ``float``, ``str`` or ``bool``: each field becomes a CLI flag, and a
    name another method also uses must have the same type there.

    A field added after artifacts were saved without it goes in the optional class attribute
    ``legacy_values: ClassVar[dict[str, Any]]`` with the value those artifacts were trained
    with, so that they still load as they were made (the new default may differ).
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @property
    def num_tokens(self) -> int: ...


ConfigT = TypeVar("ConfigT", bound=MethodConfig)


@dataclass(frozen=True, kw_only=True)
class TrainingDefaults:
    """A method's trainer defaults, used by ``lrpt train`` for the flags not given.

    Every method declares its own ``lr``; the others are common defaults a method may override.
    The rule for a method's learning rate(s) (``lr``, and a config's ``*_lr`` option such as
    DePT's ``lowrank_lr``): the point of the ``fair`` suite's grid with the best seed-0
    validation accuracy at the method's first configuration there, averaged over MR and BBC
    (``bench/results/fair/summary.json``; the first point on a tie). docs/training.md shows each
    grid, and tests/test_readme.py checks every default against it.
    """

    weight_decay: float = 1e-5
    warmup: float = 0.1  # fraction of the steps
    head_lr: float = 1e-3  # the classification head of encoder models
    lr: float

    def __post_init__(self) -> None:
        check_positive_float("lr", self.lr)
        check_positive_float("head_lr", self.head_lr)
        check_nonneg_float("weight_decay", self.weight_decay)
        check_probability("warmup", self.warmup)


class PromptMethod(nn.Module, Generic[ConfigT]):
    """Base class of every prompt method. Subclasses set the class attributes and override.

    Class attributes: ``key`` (the registry key), ``config_class`` (the config dataclass,
    ``ConfigT``), ``training_defaults`` (its :class:`TrainingDefaults`), ``static`` (False: the
    prompt depends on the input, which needs an encoder), and ``paper``, ``formula`` and
    ``param_formula`` for the methods table.

    Attributes:
        config: the validated config.
        dims: the model's sizes.
        init_seed: the seed of the generator :meth:`init_weights` drew from, from which the
            frozen state regenerates; None until initialised.
    """

    key: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]]  # ConfigT's class (a ClassVar cannot say so)
    training_defaults: ClassVar[TrainingDefaults]
    static: ClassVar[bool] = True  # False: the prompt depends on the input (needs an encoder)
    paper: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    param_formula: ClassVar[str] = ""

    config: ConfigT
    dims: ModelDims
    init_seed: int | None

    def __init__(self, config: ConfigT, dims: ModelDims) -> None:
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
        self.init_seed = None

    @property
    def num_tokens(self) -> int:
        """Number of prompt rows ``n`` this method inserts."""
        return int(self.config.num_tokens)

    @final
    def init_weights(self, ctx: InitContext) -> None:
        """Initialise every tensor from ``ctx`` (:meth:`init_tensors`), then record ``ctx.seed``
        as :attr:`init_seed`."""
        self.init_tensors(ctx)
        self.init_seed = ctx.seed

    def init_tensors(self, ctx: InitContext) -> None:
        """Fill every tensor, trainable and frozen, from ``ctx``. Random draws come from
        ``ctx.generator`` only (never the global RNG): the same seed gives the same tensors."""
        raise NotImplementedError

    def prompt(self, batch_size: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The prompt rows: ``(1, n, d)`` if static, else ``(B, n, d)`` from ``condition (B, k)``"""
        if not self.static:
            raise NotImplementedError
        return self.materialise().unsqueeze(0)

    def materialise(self) -> torch.Tensor:
        """The plain ``(n, d)`` prompt of a static method."""
        raise TypeError(f"method {self.key!r} is instance-dependent: it has no single prompt")

    def check_condition(self, batch_size: int, condition: torch.Tensor | None) -> torch.Tensor:
        """``condition`` if it is the ``(batch_size, k)`` encoder output, else ``ValueError``."""
        if condition is None:
            raise ValueError(f"method {self.key!r} is instance-dependent: it needs a condition")
        expected = (batch_size, self.dims.encoder_dim)
        if tuple(condition.shape) != expected:
            raise ValueError(f"condition must have shape {expected}, got {tuple(condition.shape)}")
        return condition

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


def config_fields(config_class: type) -> dict[str, dataclasses.Field[Any]]:
    """The config dataclass's fields by name."""
    return {f.name: f for f in dataclasses.fields(config_class)}


def changes_input(method: type[PromptMethod[Any]] | PromptMethod[Any]) -> bool:
    """Whether the method adds an update to the input token embeddings (overrides
    :meth:`PromptMethod.input_update`, whose contract default is "no update")."""
    cls = method if isinstance(method, type) else type(method)
    return cls.input_update is not PromptMethod.input_update
