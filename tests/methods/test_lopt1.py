"""lopt1: P = U V with a truncated-SVD init; counts, formula, init, seeds, validation."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

import lrpt
from lrpt.accounting import describe
from lrpt.methods import InitContext
from lrpt.methods.blocks import vocab_init
from lrpt.methods.lopt1 import LoPT1Config


def build(seed: int = 0, **options):
    loaded = tiny("causal")
    return lrpt.build_method("lopt1", loaded.model, loaded.tokenizer, seed=seed, **options)


def vocab_prompt(seed: int, n: int) -> torch.Tensor:
    """The vocab-initialised prompt the method starts from (the first draw of its generator)."""
    loaded = tiny("causal")
    ctx = InitContext(
        embedding=loaded.model.get_input_embeddings(),
        generator=torch.Generator().manual_seed(seed),
        tokenizer=loaded.tokenizer,
    )
    return vocab_init(ctx, n)


def test_paper_param_count_gpt2_large() -> None:
    info = describe("lopt1", 1280, num_tokens=20, rank=5)
    assert info["trainable_params"] == 6_500
    assert info["tensors"] == {"U": [20, 5], "V": [5, 1280]}
    assert describe("pt", 1280, num_tokens=20)["trainable_params"] == 25_600  # "factor of 5"


def test_defaults() -> None:
    assert LoPT1Config() == LoPT1Config(num_tokens=20, rank=5)


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


def test_same_seed_is_bit_identical_and_global_rng_untouched() -> None:
    torch.manual_seed(1)
    first = build(seed=5)
    torch.manual_seed(2)
    state = torch.get_rng_state()
    second = build(seed=5)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(first.U, second.U) and torch.equal(first.V, second.V)
    assert not torch.equal(first.materialise(), build(seed=6).materialise())


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"rank": 0}, r"rank .*0"),
        ({"num_tokens": 0}, r"num_tokens .*0"),
        ({"num_tokens": 4, "rank": 5}, r"rank must be ≤ num_tokens \(4\).*got 5"),
    ],
)
def test_validation(options: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        LoPT1Config(**options)


def test_rank_above_embed_dim_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"rank must be ≤ embed_dim \(8\), got 10"):
        describe("lopt1", 8, num_tokens=20, rank=10)
