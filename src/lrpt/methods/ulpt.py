"""``ulpt``: Ultra-Low-Dimensional Prompt Tuning (Wu et al., 2025, "ULPT: Prompt Tuning with
Ultra-Low-Dimensional Optimization").

Formula: ``P = (Z Â) ⊙ s + b`` (``s`` and ``b`` broadcast over rows). ``Z`` (n × r) trainable,
``Â`` (r × d) a frozen random up-projection, ``s`` (scale, init 1) and ``b`` (shift, init 0), each
``d``, trainable and shared by all rows. Parameters: ``n·r + 2·d``.

Initialisation (reference code, T5 path): ``Z ~ N(0, 1)`` from the init generator;
``Â ~ U(±√(6/(r+d)))`` (Xavier uniform). ``Â`` is never stored: it is regenerated from the config
field ``projection_seed`` by :mod:`lrpt.projection`'s portable generator, bit-identical on any
machine, and :meth:`ULPT.extra_state` records that seed and the SHA-256 fingerprint of the
regenerated tensor. ``projection_seed`` is separate from the init seed (``build_method(seed=…)``,
which draws ``Z``), so one projection can be shared by prompts trained from different inits.

Ablations (options):

* ``scale=False`` / ``shift=False``: no ``s`` / no ``b`` (not allocated, not counted).
* ``train_projection=True`` (the paper's Table 3 alternative): ``Z`` is frozen and ``Â`` trained.
  ``Z`` is then regenerated from ``projection_seed`` too (Irwin–Hall(12) − 6 ≈ N(0, 1), bit-exact
  everywhere, see :mod:`lrpt.projection`), ``Â`` starts from the generated projection, and the
  fingerprint in :meth:`ULPT.extra_state` is ``Z``'s. Parameters ``g·r·d + 2·d``.
* ``groups=g``: the ``n`` rows are split into ``g`` consecutive blocks, each with its own
  projection ``Â_j`` regenerated from ``(projection_seed, j)``. The split is
  ``torch.tensor_split``'s: the first ``n mod g`` blocks have ``⌈n/g⌉`` rows, the others
  ``⌊n/g⌋``, so ``g`` need not divide ``n`` but must be ≤ ``n`` (no empty block).
  ``groups=1`` is the paper's method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lrpt.methods.base import (
    InitContext,
    ModelDims,
    PromptMethod,
    TrainingDefaults,
    check_bool,
    check_positive,
)
from lrpt.projection import latent_matrix, projection_fingerprint, projection_matrix

SEED_LIMIT = 2**64  # the generator's seed is a 64-bit word


@dataclass(frozen=True)
class ULPTConfig:
    num_tokens: int = 100
    rank: int = 2
    projection_seed: int = 0  # regenerates the frozen projection
    shift: bool = True
    scale: bool = True
    train_projection: bool = False
    groups: int = 1

    def __post_init__(self) -> None:
        check_positive("num_tokens", self.num_tokens)
        check_positive("rank", self.rank)
        check_positive("groups", self.groups)
        if self.groups > self.num_tokens:
            raise ValueError(f"groups must be ≤ num_tokens ({self.num_tokens}), got {self.groups}")
        seed = self.projection_seed
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT:
            raise ValueError(f"projection_seed must be an integer in [0, 2**64), got {seed!r}")
        for name in ("shift", "scale", "train_projection"):
            check_bool(name, getattr(self, name))


class ULPT(PromptMethod[ULPTConfig]):
    key = "ulpt"
    config_class = ULPTConfig
    paper = "ULPT, Wu et al. 2025"
    formula = "P = (Z Â) ⊙ s + b"
    param_formula = "n·r + 2·d"
    training_defaults = TrainingDefaults(lr=3e-2)  # the fair suite's grid choice

    def __init__(self, config: ULPTConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        n, r, g, d = config.num_tokens, config.rank, config.groups, dims.embed_dim
        latent = torch.empty(n, r)  # (n, r) Z
        projection = torch.empty(g, r, d)  # (g, r, d) Â per group
        if config.train_projection:
            self.register_buffer("latent", latent, persistent=False)
            self.projection = nn.Parameter(projection)
        else:
            self.latent = nn.Parameter(latent)
            self.register_buffer("projection", projection, persistent=False)
        self.scale = nn.Parameter(torch.empty(d)) if config.scale else None  # (d,) s
        self.shift = nn.Parameter(torch.empty(d)) if config.shift else None  # (d,) b

    @property
    def group_sizes(self) -> list[int]:
        """Rows per projection group (consecutive blocks, larger blocks first)."""
        n, g = self.config.num_tokens, self.config.groups
        return [n // g + (1 if j < n % g else 0) for j in range(g)]

    def generated_projection(self) -> torch.Tensor:
        """``Â`` regenerated from the seed: ``(g, r, d)`` float32, the same on every machine."""
        seed, r, d = self.config.projection_seed, self.config.rank, self.dims.embed_dim
        blocks = [projection_matrix(seed, r, d, group=j) for j in range(self.config.groups)]
        return torch.stack(blocks)  # (g, r, d)

    def generated_latent(self) -> torch.Tensor:
        """The frozen ``Z`` of ``train_projection``, regenerated from the seed: ``(n, r)``."""
        return latent_matrix(self.config.projection_seed, self.config.num_tokens, self.config.rank)

    def frozen_tensor(self) -> tuple[str, torch.Tensor]:
        """The tensor regenerated from the seed, never stored: ``Â``, or ``Z`` if ``Â`` trains."""
        if self.config.train_projection:
            return "latent", self.latent
        return "projection", self.projection

    def init_tensors(self, ctx: InitContext) -> None:
        n, r = self.config.num_tokens, self.config.rank
        with torch.no_grad():
            self.projection.copy_(self.generated_projection())
            if self.config.train_projection:
                self.latent.copy_(self.generated_latent())
            else:
                self.latent.copy_(torch.randn(n, r, generator=ctx.generator))
            if self.scale is not None:
                self.scale.fill_(1.0)
            if self.shift is not None:
                self.shift.zero_()

    def materialise(self) -> torch.Tensor:
        blocks = torch.split(self.latent, self.group_sizes)  # g × (n_j, r)
        up = torch.cat([z @ a for z, a in zip(blocks, self.projection, strict=True)])  # (n, d)
        if self.scale is not None:
            up = up * self.scale  # (n, d) ⊙ (d,)
        if self.shift is not None:
            up = up + self.shift  # (n, d) + (d,)
        return up

    def extra_state(self) -> dict[str, Any]:
        name, tensor = self.frozen_tensor()
        return {
            "projection_seed": self.config.projection_seed,
            "projection_sha256": projection_fingerprint(tensor),
            "projection_tensor": name,
        }
