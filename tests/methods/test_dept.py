"""dept: the count formula, init, the scaled low-rank input update, two learning rates (the
shared checks: test_contract.py)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny, tiny_method

from lrpt.accounting import describe
from lrpt.methods.dept import DePT


@pytest.mark.parametrize(
    ("d", "s", "r", "m"), [(64, 5, 3, 17), (512, 1, 1, 1), (1024, 100, 8, 512)]
)
def test_count_formula(d: int, s: int, r: int, m: int) -> None:
    got = describe("dept", d, num_tokens=s, rank=r, max_length=m)
    assert got["trainable_params"] == s * d + r * (m + d)
    assert got["trainable_params"] == sum(math.prod(shape) for shape in got["tensors"].values())


def _built(seed: int = 0, **options) -> DePT:
    method = tiny_method("dept", seed, **options)
    assert isinstance(method, DePT)
    return method


def test_init() -> None:
    """P_s rows are token embeddings; A is Kaiming-uniform(a=√5) on (m, r); B and the update 0."""
    method = _built(rank=8, max_length=32)
    table = tiny("causal").model.get_input_embeddings().weight.detach()
    assert all((table == row).all(1).any() for row in method.prompt_embeddings.detach())
    a = method.lowrank_a.detach()
    bound = 1 / math.sqrt(8)  # kaiming_uniform(a=√5): gain √(1/3) · √(3 / fan_in), fan_in = r
    assert a.abs().max() <= bound
    assert a.abs().max() > 0.9 * bound and a.std() > 0.5 * bound / math.sqrt(3)
    assert torch.equal(method.lowrank_b.detach(), torch.zeros(8, 64))
    assert torch.equal(method.update_matrix().detach(), torch.zeros(32, 64))


def test_input_update_by_hand() -> None:
    """Row (α/√r)·A[i] B for 0 ≤ i < m; zero for −1 (no update) and for i ≥ m."""
    method = _built(rank=4, max_length=6, alpha=2.0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        method.lowrank_b.copy_(torch.randn(4, 64, generator=g))
    positions = torch.tensor([[-1, 0, 3, 5], [6, 9, 2, -1]])
    got = method.input_update(positions).detach()
    a, b = method.lowrank_a.detach(), method.lowrank_b.detach()
    assert got.shape == (2, 4, 64)
    for (row, col), pos in zip(torch.cartesian_prod(torch.arange(2), torch.arange(4)).tolist(),
                               positions.flatten().tolist(), strict=True):  # fmt: skip
        if 0 <= pos < 6:
            expected = (2.0 / math.sqrt(4)) * (a[pos] @ b)
            torch.testing.assert_close(got[row, col], expected, rtol=1e-6, atol=1e-6)
            assert got[row, col].abs().sum() > 0
        else:
            assert torch.equal(got[row, col], torch.zeros(64))


def test_materialise_is_the_short_prompt() -> None:
    method = _built(num_tokens=7)
    assert method.materialise() is method.prompt_embeddings
    assert method.prompt(3).shape == (1, 7, 64)
    assert method.static and method.num_tokens == 7


def test_param_groups() -> None:
    method = _built(lowrank_lr=2e-3)
    groups = method.param_groups(0.3)
    assert [g["name"] for g in groups] == ["prompt", "lowrank"]
    assert [g["lr"] for g in groups] == [0.3, 2e-3]
    assert groups[0]["params"] == [method.prompt_embeddings]
    assert groups[1]["params"] == [method.lowrank_a, method.lowrank_b]
    torch.optim.AdamW(groups)  # a valid optimizer spec
