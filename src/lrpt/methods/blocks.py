"""Building blocks shared by the methods: prompt initialisations, the SVD factoriser, the MLP head,
the position-wise input-update gather and two-learning-rate parameter groups.

Methods import from here and from :mod:`lrpt.methods.base`, never from each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lrpt.methods.base import InitContext

TOP_IDS = 5000  # vocab init samples from the 5,000 most frequent token ids
MLP_INIT_STD = 0.02  # std of MLPHead's weights (LoPA reference code: initializer_range)


# --------------------------------------------------------------------------- prompt inits
def candidate_ids(ctx: InitContext) -> torch.Tensor:
    """The ids vocab init samples from: the first ``TOP_IDS`` ids, special tokens removed.

    BPE vocabularies assign ids in merge order, so low ids are the most frequent tokens.
    """
    ids = torch.arange(min(TOP_IDS, ctx.vocab_size))
    special = set(getattr(ctx.tokenizer, "all_special_ids", []) or [])
    if special:
        ids = ids[~torch.isin(ids, torch.tensor(sorted(special)))]
    if len(ids) == 0:
        raise ValueError("the vocabulary has no non-special token to initialise a prompt from")
    return ids


def vocab_init(ctx: InitContext, n: int) -> torch.Tensor:
    """``(n, d)`` embeddings of ``n`` ids drawn uniformly (without replacement when possible)."""
    pool = candidate_ids(ctx)
    if n <= len(pool):
        pick = torch.randperm(len(pool), generator=ctx.generator)[:n]
    else:
        pick = torch.randint(len(pool), (n,), generator=ctx.generator)
    return ctx.embed(pool[pick])


def text_init(ctx: InitContext, text: str, n: int) -> torch.Tensor:
    """``(n, d)`` embeddings of ``text``'s tokens, cycled to ``n`` rows."""
    if ctx.tokenizer is None:
        raise ValueError("init 'text' needs a tokenizer")
    ids = ctx.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"init_text {text!r} has no tokens")
    ids = torch.tensor(ids)[torch.arange(n) % len(ids)]
    return ctx.embed(ids)


def random_init(ctx: InitContext, n: int) -> torch.Tensor:
    """``(n, d)`` normal rows with the embedding matrix's standard deviation."""
    weight = ctx.weight.detach().float()
    std = float(weight.std())
    return torch.randn(n, weight.shape[1], generator=ctx.generator) * std


def mean_row_norm(ctx: InitContext) -> float:
    """Mean L2 norm of the (candidate) token embeddings."""
    return float(ctx.embed(candidate_ids(ctx)).norm(dim=1).mean())


# --------------------------------------------------------------------------- SVD
def _signed_svd(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The truncated SVD ``U_r, Σ_r, V_rᵀ`` of ``matrix`` in float64, each column of ``U_r``
    with a positive largest-magnitude entry (the sign of each pair goes to ``V_rᵀ``)."""
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    u, s, vh = u[:, :rank], s[:rank], vh[:rank]  # (rows, r), (r,), (r, cols)
    peak = u.gather(0, u.abs().argmax(0, keepdim=True))  # (1, r)
    sign = torch.where(peak < 0, -1.0, 1.0).to(u.dtype)  # (1, r)
    return u * sign, s, sign.T * vh


def svd_factors(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The balanced rank-``rank`` factors of ``matrix`` (rows × cols) from its truncated SVD
    ``U_r Σ_r V_rᵀ``: ``left = U_r √Σ_r`` (rows × r) and ``right = √Σ_r V_rᵀ`` (r × cols), float32.

    ``left @ right`` is the best rank-``rank`` approximation of ``matrix`` (Eckart–Young) and
    ``leftᵀ left = right rightᵀ = Σ_r``. The SVD runs in float64.

    Sign convention: each column of ``left`` has a positive largest-magnitude entry (the sign of
    each singular pair goes to ``right``), so the factors do not depend on the LAPACK build's sign
    choice. Flipping a pair's sign is exact, so the product is the same under any convention.
    """
    u, s, vh = _signed_svd(matrix, rank)
    root = s.sqrt()  # (r,)
    return (u * root).float(), (root[:, None] * vh).float()


def svd_vectors(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``rank`` singular vectors of ``matrix`` without the singular values:
    ``U_r`` (rows × r, orthonormal columns) and ``V_rᵀ`` (r × cols, orthonormal rows), float32,
    with :func:`svd_factors`' sign convention. ``U_r V_rᵀ`` has spectral norm 1 and row ``i`` of
    it has the norm of ``U_r``'s row ``i`` (about √(r / rows) on average)."""
    u, _, vh = _signed_svd(matrix, rank)
    return u.float(), vh.float()


# --------------------------------------------------------------------------- MLP head
class MLPHead(nn.Module):
    """``Dropout → Linear(k, h) → tanh → Linear(h, out)``: the head LoPA and S-IDPG put on the
    input encoder's pooled output.

    Args:
        in_dim: ``k``, the encoder's output size.
        hidden: ``h``, the hidden width.
        out_dim: the output size.
        dropout: dropout probability on the input, in [0, 1).

    Allocates only (no RNG); :meth:`reset` initialises weights N(0, ``std``) and biases 0.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.down_weight = nn.Parameter(torch.empty(hidden, in_dim))  # (h, k)
        self.down_bias = nn.Parameter(torch.empty(hidden))  # (h,)
        self.up_weight = nn.Parameter(torch.empty(out_dim, hidden))  # (out, h)
        self.up_bias = nn.Parameter(torch.empty(out_dim))  # (out,)

    def reset(self, generator: torch.Generator, std: float = MLP_INIT_STD) -> None:
        """Weights N(0, ``std``) from ``generator`` (down, then up), biases 0."""
        with torch.no_grad():
            self.down_weight.normal_(0.0, std, generator=generator)
            self.up_weight.normal_(0.0, std, generator=generator)
            self.down_bias.zero_()
            self.up_bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, k)`` → ``(B, out)``."""
        hidden = torch.tanh(F.linear(self.dropout(x), self.down_weight, self.down_bias))  # (B, h)
        return F.linear(hidden, self.up_weight, self.up_bias)  # (B, out)


# --------------------------------------------------------------------------- input update
def rows_at(update: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``update (m, d)`` gathered at ``positions (B, L)`` → ``(B, L, d)``; zero rows where the
    position is −1 (no update) or ``≥ m``.

    ``index_select``, not ``update[index]``: the backward of advanced indexing on CPU
    (``index_put_`` with accumulation) adds rows that share a position in whatever order its
    threads reach them, so two runs of the same seed differ in the last bits from the first
    update on. ``index_select``'s backward (``index_add_``) sums in a fixed order and gives the
    bits of the deterministic ``index_put_``."""
    m = update.shape[0]
    valid = (positions >= 0) & (positions < m)  # (B, L)
    index = positions.clamp(0, m - 1)
    rows = update.index_select(0, index.reshape(-1)).view(*index.shape, update.shape[1])
    return torch.where(valid.unsqueeze(-1), rows, rows.new_zeros(()))


def two_rate_groups(
    module: nn.Module, second: Iterable[nn.Parameter], lr: float, second_lr: float
) -> list[dict[str, Any]]:
    """Optimizer groups ``prompt`` (every trainable parameter of ``module`` not in ``second``, at
    ``lr``) and ``lowrank`` (``second``, at ``second_lr``)."""
    lowrank = list(second)
    ids = {id(p) for p in lowrank}
    prompt = [p for p in module.parameters() if p.requires_grad and id(p) not in ids]
    return [
        {"name": "prompt", "params": prompt, "lr": lr},
        {"name": "lowrank", "params": lowrank, "lr": second_lr},
    ]
