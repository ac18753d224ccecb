"""dpt: P = A B; the formula by hand and the two initialisations (the shared checks:
test_contract.py)."""

from __future__ import annotations

import functools
import math

import torch
from conftest import tiny_method

from lrpt.methods.dpt import NORMAL_STD

build = functools.partial(tiny_method, "dpt")


def test_materialise_is_a_times_b() -> None:
    method = build(num_tokens=7, rank=3)
    a, b = method.A.detach(), method.B.detach()
    by_hand = torch.stack([sum(a[i, k] * b[k] for k in range(3)) for i in range(7)])
    torch.testing.assert_close(method.materialise().detach(), by_hand)
    assert method.materialise().shape == (7, 64)
    assert method.prompt(2).shape == (1, 7, 64)


def test_uniform_init_range() -> None:
    """The default init (the reference code's): every entry U(−0.5, 0.5)."""
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
