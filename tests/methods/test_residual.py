"""residual: P' = P + LayerNorm(W2 ReLU(W1 P + b1) + b2); the formula by hand, the init and its
norm_init option (the shared checks: test_contract.py)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from conftest import tiny, tiny_method

build = functools.partial(tiny_method, "residual")


def test_norm_init_token() -> None:
    """norm_init = "token": the LayerNorm weight starts at t/√d (t: the mean token norm), so
    the residual term's rows start at about a token's norm instead of √d; same draws otherwise,
    same parameter count."""
    ones, token = build(seed=3), build(seed=3, norm_init="token")
    vocab = tiny("causal").model.get_input_embeddings().weight.detach()
    t = float(vocab[:5000].norm(dim=1).mean())  # tiny's candidate ids: every non-special id
    assert float(token.norm_weight.detach()[0]) == pytest.approx(t / 8.0, rel=0.02)  # √64 = 8
    assert torch.equal(token.norm_weight, torch.full((64,), float(token.norm_weight.detach()[0])))
    for name in ("prompt_embeddings", "w1", "b1", "w2", "b2", "norm_bias"):
        assert torch.equal(getattr(ones, name), getattr(token, name)), name
    p = ones.prompt_embeddings.detach()
    plain = (ones.materialise().detach() - p).norm(dim=1)
    scaled = (token.materialise().detach() - p).norm(dim=1)
    torch.testing.assert_close(plain, torch.full_like(plain, 8.0), rtol=1e-2, atol=0)  # √d (less ε)
    torch.testing.assert_close(scaled, torch.full_like(scaled, t), rtol=0.03, atol=0)
    assert sum(x.numel() for x in token.parameters()) == sum(x.numel() for x in ones.parameters())


def test_materialise_formula() -> None:
    method = build(num_tokens=5, hidden=16)
    with torch.no_grad():  # non-trivial LayerNorm affine, to test it too
        method.norm_weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(0))
        method.norm_bias.normal_(generator=torch.Generator().manual_seed(1))
    m = {name: p.detach() for name, p in method.named_parameters()}
    p = m["prompt_embeddings"]
    mlp = torch.relu(p @ m["w1"].T + m["b1"]) @ m["w2"].T + m["b2"]  # (n, d)
    mean = mlp.mean(-1, keepdim=True)
    var = mlp.var(-1, unbiased=False, keepdim=True)
    normed = (mlp - mean) / torch.sqrt(var + 1e-5) * m["norm_weight"] + m["norm_bias"]
    torch.testing.assert_close(method.materialise().detach(), p + normed)


def test_init() -> None:
    """The default (the paper's LayerNorm, weight 1 and bias 0); the MLP as ``nn.Linear``."""
    method = build()
    vocab = tiny("causal").model.get_input_embeddings().weight.detach()
    rows = method.prompt_embeddings.detach()
    assert all(bool((vocab == row).all(-1).any()) for row in rows)  # each row is a token's
    d, h = 64, 400
    for name, fan_in in (("w1", d), ("b1", d), ("w2", h), ("b2", h)):
        values = getattr(method, name).detach()
        assert float(values.abs().max()) <= 1 / math.sqrt(fan_in), name
        assert float(values.abs().max()) > 0.8 / math.sqrt(fan_in), name
    assert torch.equal(method.norm_weight, torch.ones(d))
    assert torch.equal(method.norm_bias, torch.zeros(d))
