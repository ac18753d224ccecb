"""lopa: the count formula, the initial prompt, the prompt by hand (the shared checks, those of the
instance-dependent methods included: test_contract.py)."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import randomise, tiny_prompted

from lrpt.accounting import describe
from lrpt.methods import ModelDims
from lrpt.methods.lopa import LoPA, LoPAConfig

TEXTS = ["a quiet film", "loud and very long"]
_prompted = functools.partial(tiny_prompted, "lopa")


def _formula(d: int, k: int, n: int, h: int, r: int) -> int:
    return n * d + (k * h + h + h * d * r + d * r) + (k * h + h + h * n * r + n * r)


@pytest.mark.parametrize(
    ("d", "k", "n", "h", "r"),
    [(64, 64, 10, 256, 4), (96, 32, 3, 5, 2),
     (1024, 1024, 10, 256, 4),  # NLU, RoBERTa-large: the paper's 1,597,992 (test_contract.py)
     *((d, 1024, 10, 1024, 1) for d in (2048, 2560, 3072, 4096))],  # the code tasks' models
)  # fmt: skip
def test_count_formula_and_tensors(d: int, k: int, n: int, h: int, r: int) -> None:
    got = describe("lopa", d, encoder_dim=k, num_tokens=n, hidden=h, rank=r)
    assert got["trainable_params"] == _formula(d, k, n, h, r)
    assert got["tensors"] == {
        "prompt_shared": [n, d],
        "mlp_u.down_weight": [h, k], "mlp_u.down_bias": [h],
        "mlp_u.up_weight": [d * r, h], "mlp_u.up_bias": [d * r],
        "mlp_v.down_weight": [h, k], "mlp_v.down_bias": [h],
        "mlp_v.up_weight": [n * r, h], "mlp_v.up_bias": [n * r],
    }  # fmt: skip


def test_init() -> None:
    """Z_S rows are token embeddings; with the MLPs' init (test_contract.py), prompt ≈ Z_S / 2."""
    pm = _prompted(hidden=512, rank=8)
    method = pm.method
    table = pm.model.get_input_embeddings().weight.detach()
    assert all((table == row).all(1).any() for row in method.prompt_shared.detach())
    method.eval()
    prompt = method.prompt(2, pm.encoder(TEXTS)).detach()
    half = method.prompt_shared.detach() / 2
    torch.testing.assert_close(prompt, half.expand(2, -1, -1), rtol=0.05, atol=1e-4)
    assert prompt.abs().sum() > 0


def test_prompt_by_hand() -> None:
    """P = Z_S ⊙ sigmoid(v uᵀ), u = W2u tanh(W1u e + b1u) + b2u (d × r), v likewise (n × r)."""
    method = LoPA(LoPAConfig(num_tokens=3, hidden=5, rank=2), ModelDims(embed_dim=4, encoder_dim=6))
    method.eval()  # no dropout
    e = torch.randn(2, 6, generator=randomise(method))
    got = method.prompt(2, e).detach()
    p = {name: t.detach() for name, t in method.named_parameters()}
    for b in range(2):
        u = p["mlp_u.up_weight"] @ torch.tanh(p["mlp_u.down_weight"] @ e[b] + p["mlp_u.down_bias"])
        v = p["mlp_v.up_weight"] @ torch.tanh(p["mlp_v.down_weight"] @ e[b] + p["mlp_v.down_bias"])
        u, v = (u + p["mlp_u.up_bias"]).view(4, 2), (v + p["mlp_v.up_bias"]).view(3, 2)
        expected = p["prompt_shared"] * torch.sigmoid(v @ u.T)
        torch.testing.assert_close(got[b], expected, rtol=1e-5, atol=1e-6)
