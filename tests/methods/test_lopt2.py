"""lopt2: P = σ(X0 U) V; the count's independence of n, the formula per activation, the frozen
X0, the init (row norm) (the shared checks: test_contract.py)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import init_context, tiny_method

from lrpt.accounting import describe
from lrpt.methods.blocks import mean_row_norm, vocab_init
from lrpt.projection import projection_fingerprint

build = functools.partial(tiny_method, "lopt2")


def test_count_does_not_depend_on_num_tokens() -> None:
    """GPT2-large's 12,800 (the paper's, at n = 20: test_contract.py) at n = 200 too."""
    assert describe("lopt2", 1280, num_tokens=200, rank=5)["trainable_params"] == 12_800


@pytest.mark.parametrize(
    ("activation", "sigma"),
    [(None, torch.tanh), ("tanh", torch.tanh), ("relu", torch.relu), ("gelu", F.gelu)],
)
def test_materialise_formula(activation: str | None, sigma) -> None:
    """σ is the option's (tanh when none is given)."""
    method = build() if activation is None else build(activation=activation)
    x0, u, v = method.X0, method.U.detach(), method.V.detach()
    by_hand = torch.einsum("nr,rd->nd", sigma(torch.einsum("nd,dr->nr", x0, u)), v)
    torch.testing.assert_close(method.materialise().detach(), by_hand)


def test_x0_is_a_frozen_vocab_buffer() -> None:
    method = build(seed=3)
    assert torch.equal(method.X0, vocab_init(init_context(3), 20))
    assert "X0" not in dict(method.named_parameters())
    assert "X0" in dict(method.named_buffers())
    assert "X0" not in method.state_dict()
    assert set(method.trainable_tensors()) == {"U", "V"}
    assert method.extra_state() == {"x0_sha256": projection_fingerprint(method.X0)}


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
def test_initial_mean_row_norm_matches_embeddings(activation: str) -> None:
    method = build(seed=1, activation=activation)
    norm = float(method.materialise().detach().norm(dim=1).mean())
    assert norm == pytest.approx(mean_row_norm(init_context()), rel=1e-5)


def test_u_is_xavier_uniform() -> None:
    method = build()
    bound = math.sqrt(6 / (64 + 5))
    largest = float(method.U.detach().abs().max())
    assert 0.8 * bound < largest <= bound
