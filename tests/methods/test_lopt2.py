"""lopt2: P = σ(X0 U) V; counts, formula, init (row norm), seeds, validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny

import lrpt
from lrpt.accounting import describe
from lrpt.methods import InitContext
from lrpt.methods.blocks import mean_row_norm, vocab_init
from lrpt.methods.lopt2 import LoPT2Config
from lrpt.projection import projection_fingerprint


def context(seed: int = 0) -> InitContext:
    loaded = tiny("causal")
    return InitContext(
        embedding=loaded.model.get_input_embeddings(),
        generator=torch.Generator().manual_seed(seed),
        tokenizer=loaded.tokenizer,
    )


def build(seed: int = 0, **options):
    loaded = tiny("causal")
    return lrpt.build_method("lopt2", loaded.model, loaded.tokenizer, seed=seed, **options)


def test_paper_param_count_gpt2_large() -> None:
    info = describe("lopt2", 1280, num_tokens=20, rank=5)
    assert info["trainable_params"] == 12_800
    assert info["tensors"] == {"U": [1280, 5], "V": [5, 1280]}
    assert describe("lopt2", 1280, num_tokens=200, rank=5)["trainable_params"] == 12_800


def test_defaults() -> None:
    assert LoPT2Config() == LoPT2Config(num_tokens=20, rank=5, activation="tanh")


@pytest.mark.parametrize(
    ("activation", "sigma"), [("tanh", torch.tanh), ("relu", torch.relu), ("gelu", F.gelu)]
)
def test_materialise_formula(activation: str, sigma) -> None:
    method = build(activation=activation)
    x0, u, v = method.X0, method.U.detach(), method.V.detach()
    by_hand = torch.einsum("nr,rd->nd", sigma(torch.einsum("nd,dr->nr", x0, u)), v)
    torch.testing.assert_close(method.materialise().detach(), by_hand)


def test_x0_is_a_frozen_vocab_buffer() -> None:
    method = build(seed=3)
    assert torch.equal(method.X0, vocab_init(context(3), 20))
    assert "X0" not in dict(method.named_parameters())
    assert "X0" in dict(method.named_buffers())
    assert "X0" not in method.state_dict()
    assert set(method.trainable_tensors()) == {"U", "V"}
    assert method.extra_state() == {"x0_sha256": projection_fingerprint(method.X0)}


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
def test_initial_mean_row_norm_matches_embeddings(activation: str) -> None:
    method = build(seed=1, activation=activation)
    norm = float(method.materialise().detach().norm(dim=1).mean())
    assert norm == pytest.approx(mean_row_norm(context()), rel=1e-5)


def test_u_is_xavier_uniform() -> None:
    method = build()
    bound = math.sqrt(6 / (64 + 5))
    largest = float(method.U.detach().abs().max())
    assert 0.8 * bound < largest <= bound


def test_same_seed_is_bit_identical_and_global_rng_untouched() -> None:
    torch.manual_seed(1)
    first = build(seed=5)
    torch.manual_seed(2)
    state = torch.get_rng_state()
    second = build(seed=5)
    assert torch.equal(state, torch.get_rng_state())
    for name in ("X0", "U", "V"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    assert not torch.equal(first.U, build(seed=6).U)


def test_gradients_reach_u_and_v_only() -> None:
    method = build()
    method.materialise().square().sum().backward()
    assert method.U.grad is not None and method.V.grad is not None
    assert not method.X0.requires_grad


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"rank": 0}, r"rank .*0"),
        ({"num_tokens": 0}, r"num_tokens .*0"),
        ({"activation": "sigmoid"}, r"activation .*'sigmoid'"),
    ],
)
def test_validation(options: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        LoPT2Config(**options)
