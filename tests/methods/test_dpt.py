"""dpt: P = A B; parameter counts, formula, initialisation, seeds, validation."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny

import lrpt
from lrpt.accounting import describe
from lrpt.methods.dpt import NORMAL_STD, DPTConfig


def build(seed: int = 0, **options):
    loaded = tiny("causal")
    return lrpt.build_method("dpt", loaded.model, loaded.tokenizer, seed=seed, **options)


@pytest.mark.parametrize(
    ("model", "d", "rank", "expected"),
    [
        ("T5-small", 512, 10, 6_120),
        ("T5-base", 768, 10, 8_680),
        ("T5-large", 1024, 10, 11_240),
        ("T5-base", 768, 64, 55_552),
    ],
)
def test_paper_param_counts(model: str, d: int, rank: int, expected: int) -> None:
    info = describe("dpt", d, num_tokens=100, rank=rank)
    assert info["trainable_params"] == expected, model
    assert info["tensors"] == {"A": [100, rank], "B": [rank, d]}


def test_defaults() -> None:
    assert DPTConfig() == DPTConfig(num_tokens=100, rank=10, init="uniform")


def test_materialise_is_a_times_b() -> None:
    method = build(num_tokens=7, rank=3)
    a, b = method.A.detach(), method.B.detach()
    by_hand = torch.stack([sum(a[i, k] * b[k] for k in range(3)) for i in range(7)])
    torch.testing.assert_close(method.materialise().detach(), by_hand)
    assert method.materialise().shape == (7, 64)
    assert method.prompt(2).shape == (1, 7, 64)


def test_uniform_init_range() -> None:
    method = build()
    for param in (method.A.detach(), method.B.detach()):
        assert float(param.min()) >= -0.5 and float(param.max()) < 0.5
        assert abs(float(param.std()) - 1 / math.sqrt(12)) < 0.03


def test_normal_init_std() -> None:
    method = build(init="normal")
    values = torch.cat([method.A.detach().flatten(), method.B.detach().flatten()])
    assert abs(float(values.mean())) < 0.03
    assert abs(float(values.std()) - NORMAL_STD) < 0.02
    assert float(values.abs().max()) > 0.5  # not the bounded uniform


def test_same_seed_is_bit_identical_and_global_rng_untouched() -> None:
    torch.manual_seed(1)
    first = build(seed=5)
    torch.manual_seed(2)
    state = torch.get_rng_state()
    second = build(seed=5)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(first.A, second.A) and torch.equal(first.B, second.B)
    assert not torch.equal(first.A, build(seed=6).A)


def test_gradients_reach_both_factors() -> None:
    method = build(num_tokens=4, rank=2)
    method.materialise().square().sum().backward()
    assert method.A.grad is not None and method.B.grad is not None


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"rank": 0}, r"rank .*0"),
        ({"num_tokens": 0}, r"num_tokens .*0"),
        ({"num_tokens": -3}, r"num_tokens .*-3"),
        ({"init": "gaussian"}, r"init .*'gaussian'"),
    ],
)
def test_validation(options: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        DPTConfig(**options)
