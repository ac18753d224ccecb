"""ulpt: P = (Z Â) ⊙ s + b with Â regenerated from a seed; the options' counts, the formula, the
init and the frozen projection (the shared checks: test_contract.py)."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import tiny_method

from lrpt.accounting import describe
from lrpt.projection import latent_matrix, projection_fingerprint, projection_matrix

D = 64  # tiny model's embedding size
build = functools.partial(tiny_method, "ulpt")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, 100 * 2 + 2 * 768),
        ({"shift": False}, 100 * 2 + 768),
        ({"scale": False}, 100 * 2 + 768),
        ({"shift": False, "scale": False}, 100 * 2),
        ({"groups": 4}, 100 * 2 + 2 * 768),  # frozen projections are not counted
        ({"train_projection": True}, 2 * 768 + 2 * 768),  # Table 3: r=2 → "3.1K"
        ({"train_projection": True, "groups": 4}, 4 * 2 * 768 + 2 * 768),
        ({"train_projection": True, "shift": False, "scale": False}, 2 * 768),
    ],
)
def test_options_change_counts_exactly(options: dict, expected: int) -> None:
    assert describe("ulpt", 768, num_tokens=100, rank=2, **options)["trainable_params"] == expected


def test_init_and_frozen_projection() -> None:
    """By default s and b exist and train (s = 1, b = 0); Â is frozen, regenerated, not stored."""
    method = build(seed=7, rank=3, projection_seed=11)
    assert torch.equal(method.scale, torch.ones(D))
    assert torch.equal(method.shift, torch.zeros(D))
    expected = projection_matrix(11, 3, D)
    assert torch.equal(method.projection, expected[None])  # (g=1, r, d)
    assert not method.projection.requires_grad
    assert "projection" not in method.state_dict()  # never stored
    assert set(method.trainable_tensors()) == {"latent", "scale", "shift"}
    assert method.extra_state() == {
        "projection_seed": 11,
        "projection_sha256": projection_fingerprint(expected),
        "projection_tensor": "projection",
    }
    latent = method.latent.detach()  # N(0, 1) from the init generator
    assert abs(float(latent.mean())) < 0.3 and abs(float(latent.std()) - 1) < 0.3


def test_projection_regenerates_bit_identically_from_projection_seed_only() -> None:
    a = build(seed=1, projection_seed=5)
    b = build(seed=2, projection_seed=5)
    assert torch.equal(a.projection, b.projection)
    assert a.extra_state() == b.extra_state()
    assert not torch.equal(a.latent, b.latent)  # the init seed draws Z
    c = build(seed=1, projection_seed=6)
    assert not torch.equal(a.projection, c.projection)
    assert a.extra_state()["projection_sha256"] != c.extra_state()["projection_sha256"]
    assert torch.equal(a.latent, c.latent)


def perturb(method) -> None:
    """Move s and b off their identity init so the formula test sees them."""
    with torch.no_grad():
        if method.scale is not None:
            method.scale.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(0))
        if method.shift is not None:
            method.shift.normal_(generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "options",
    [{}, {"shift": False}, {"scale": False}, {"shift": False, "scale": False}],
)
def test_materialise_formula(options: dict) -> None:
    method = build(rank=3, **options)
    perturb(method)
    z, a_hat = method.latent.detach(), method.projection[0]
    by_hand = torch.einsum("nr,rd->nd", z, a_hat)
    if method.scale is not None:
        by_hand = by_hand * method.scale.detach()[None, :]
    if method.shift is not None:
        by_hand = by_hand + method.shift.detach()[None, :]
    torch.testing.assert_close(method.materialise().detach(), by_hand)
    assert (method.scale is None) == (options.get("scale") is False)
    assert (method.shift is None) == (options.get("shift") is False)


@pytest.mark.parametrize(("num_tokens", "groups"), [(10, 4), (9, 3), (5, 5)])
def test_groups_use_consecutive_blocks(num_tokens: int, groups: int) -> None:
    method = build(num_tokens=num_tokens, rank=2, groups=groups, projection_seed=3)
    perturb(method)
    sizes = [len(block) for block in torch.arange(num_tokens).tensor_split(groups)]
    assert method.group_sizes == sizes
    owner = torch.repeat_interleave(torch.arange(groups), torch.tensor(sizes))  # row → group
    for j in range(groups):
        assert torch.equal(method.projection[j], projection_matrix(3, 2, D, group=j))
    rows = [method.latent[i].detach() @ method.projection[owner[i]] for i in range(num_tokens)]
    by_hand = torch.stack(rows) * method.scale.detach() + method.shift.detach()
    torch.testing.assert_close(method.materialise().detach(), by_hand)


def test_train_projection_freezes_a_generated_latent() -> None:
    method = build(seed=4, num_tokens=6, rank=2, projection_seed=8, train_projection=True)
    latent = latent_matrix(8, 6, 2)
    assert torch.equal(method.latent, latent)
    assert not method.latent.requires_grad
    assert method.projection.requires_grad
    assert torch.equal(method.projection.detach(), projection_matrix(8, 2, D)[None])
    assert set(method.trainable_tensors()) == {"projection", "scale", "shift"}
    assert "latent" not in method.state_dict()
    assert method.extra_state() == {
        "projection_seed": 8,
        "projection_sha256": projection_fingerprint(latent),
        "projection_tensor": "latent",
    }
    method.materialise().square().sum().backward()
    assert method.projection.grad is not None
