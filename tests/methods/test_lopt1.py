"""lopt1: P = U V with a truncated-SVD init; the formula, the init, the rank bound (the shared
checks: test_contract.py)."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import init_context, tiny_method

from lrpt.accounting import describe
from lrpt.methods.blocks import vocab_init

build = functools.partial(tiny_method, "lopt1")


def vocab_prompt(seed: int, n: int) -> torch.Tensor:
    """The vocab-initialised prompt the method starts from (the first draw of its generator)."""
    return vocab_init(init_context(seed), n)


def test_materialise_is_u_times_v() -> None:
    method = build()
    u, v = method.U.detach(), method.V.detach()
    torch.testing.assert_close(method.materialise().detach(), torch.einsum("nr,rd->nd", u, v))


def test_init_is_best_rank_r_approximation_of_vocab_prompt() -> None:
    rank = 3
    method = build(seed=4, rank=rank)
    x0 = vocab_prompt(4, 20).double()
    u, s, vh = torch.linalg.svd(x0, full_matrices=False)
    best = (u[:, :rank] * s[:rank]) @ vh[:rank]
    prompt = method.materialise().detach().double()
    torch.testing.assert_close(prompt, best, atol=1e-5, rtol=1e-5)
    # Eckart–Young: the residual is exactly the discarded singular values
    residual = float((x0 - prompt).norm())
    assert residual == pytest.approx(float(s[rank:].square().sum().sqrt()), rel=1e-4)
    # the √Σ split balances the factors: UᵀU = V Vᵀ = Σ_r
    gram_u = method.U.detach().double().T @ method.U.detach().double()
    gram_v = method.V.detach().double() @ method.V.detach().double().T
    torch.testing.assert_close(gram_u, torch.diag(s[:rank]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gram_v, torch.diag(s[:rank]), atol=1e-4, rtol=1e-4)


def test_full_rank_reproduces_vocab_prompt() -> None:
    method = build(seed=2, num_tokens=6, rank=6)
    torch.testing.assert_close(method.materialise().detach(), vocab_prompt(2, 6), atol=1e-5, rtol=0)


def test_rank_above_embed_dim_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"rank must be ≤ embed_dim \(8\), got 10"):
        describe("lopt1", 8, num_tokens=20, rank=10)
