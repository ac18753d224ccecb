"""ept: parameter counts, the SVD decomposition, fusion and multi-space by hand, the ablation
switches (all off = dept), two learning rates (the shared checks: test_contract.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from conftest import init_context, tiny, tiny_method
from torch.nn import functional as F

import lrpt
from lrpt.accounting import describe
from lrpt.methods import InitContext
from lrpt.methods.blocks import svd_factors, vocab_init
from lrpt.methods.ept import EPT, EPTConfig

OFF = {"fusion": False, "multi_space": False, "decomposition": False}


def _formula(d: int, s: int, r: int, m: int, e: int, h: int) -> int:
    return s * d + r * (m + d) + e * (2 * d * h + h + d) + d * e


def test_t5_base_counts() -> None:
    """T5-base (d=768), s=60, r=30, m=256, N_e=4: 181,312 at h=16 (our default); the paper's
    layer shapes (h = m = 256) give 1,656,832. The prompt + low-rank part keeps the paper's
    budget l·d = 76,800 (l=100)."""
    got = describe("ept", 768)
    assert got["trainable_params"] == 181_312 == _formula(768, 60, 30, 256, 4, 16)
    literal = describe("ept", 768, hidden=256)["trainable_params"]
    assert literal == 1_656_832 == _formula(768, 60, 30, 256, 4, 256)
    for s, r in [(60, 30), (40, 45)]:
        budget = describe("ept", 768, num_tokens=s, rank=r, multi_space=False)
        assert budget["trainable_params"] == 100 * 768 == 76_800


@pytest.mark.parametrize(
    ("d", "s", "r", "m", "e", "h"),
    [(64, 5, 3, 17, 2, 4), (512, 10, 1, 40, 1, 1), (96, 8, 7, 9, 6, 3)],
)
def test_count_formula(d: int, s: int, r: int, m: int, e: int, h: int) -> None:
    got = describe("ept", d, num_tokens=s, rank=r, max_length=m, experts=e, hidden=h,
                   long_tokens=max(s, r))  # fmt: skip
    assert got["trainable_params"] == _formula(d, s, r, m, e, h)
    assert got["trainable_params"] == sum(math.prod(shape) for shape in got["tensors"].values())
    assert got["tensors"] == {
        "prompt_embeddings": [s, d], "lowrank_a": [m, r], "lowrank_b": [r, d],
        "expert_in": [e, d, h], "expert_in_bias": [e, h], "expert_out": [e, h, d],
        "expert_out_bias": [e, d], "gate": [d, e],
    }  # fmt: skip


def test_switches_change_counts_exactly() -> None:
    d, full = 768, describe("ept", 768)["trainable_params"]
    experts = 4 * (2 * d * 16 + 16 + d) + d * 4
    assert describe("ept", d, multi_space=False)["trainable_params"] == full - experts
    assert describe("ept", d, fusion=False)["trainable_params"] == full
    assert describe("ept", d, decomposition=False)["trainable_params"] == full
    off = describe("ept", d, **OFF)
    dept = describe("dept", d)
    assert off["trainable_params"] == dept["trainable_params"] == full - experts
    assert off["tensors"] == dept["tensors"]


def _built(key: str = "ept", seed: int = 0, **options) -> Any:
    """``key`` (ept by default) on the tiny model; Any: the tests read its own attributes."""
    return tiny_method(key, seed, **options)


def _long_prompt(seed: int, length: int) -> torch.Tensor:
    return vocab_init(init_context(seed), length)


def _svd(seed: int, length: int, rows: int, rank: int):
    tiled = _long_prompt(seed, length)[torch.arange(rows) % length].double()
    u, s, vh = torch.linalg.svd(tiled, full_matrices=False)
    return u[:, :rank], s[:rank], vh[:rank]


def test_decomposition_init_singular_vectors() -> None:
    """The default (the paper read literally): P_s = the long prompt's first s rows, A = U_r and
    B = V_rᵀ of the long prompt tiled to m rows, without Σ (AᵀA = BBᵀ = I)."""
    method = _built(seed=7, num_tokens=6, long_tokens=10, rank=4, max_length=23)
    assert method.config.svd_init == "vectors"
    assert torch.equal(method.prompt_embeddings.detach(), _long_prompt(7, 10)[:6])
    u, _, vh = _svd(7, 10, 23, 4)
    a, b = method.lowrank_a.detach().double(), method.lowrank_b.detach().double()
    torch.testing.assert_close(a @ b, u @ vh, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.T @ a, torch.eye(4, dtype=a.dtype), rtol=0, atol=1e-6)
    torch.testing.assert_close(b @ b.T, torch.eye(4, dtype=b.dtype), rtol=0, atol=1e-6)
    assert (a.gather(0, a.abs().argmax(0, keepdim=True)) > 0).all()  # the sign convention
    torch.testing.assert_close(method.update_matrix().detach().double(), a @ b)  # scale 1


def test_decomposition_init_sqrt_sigma() -> None:
    """The option: A = U√Σ, B = √ΣVᵀ, so A B is the best rank-r approximation of the tiled long
    prompt (AᵀA = BBᵀ = Σ); the short prompt is the same as the default's."""
    method = _built(seed=7, num_tokens=6, long_tokens=10, rank=4, max_length=23,
                    svd_init="sqrt_sigma")  # fmt: skip
    assert torch.equal(method.prompt_embeddings.detach(), _long_prompt(7, 10)[:6])
    u, s, vh = _svd(7, 10, 23, 4)
    a, b = method.lowrank_a.detach().double(), method.lowrank_b.detach().double()
    torch.testing.assert_close(a @ b, (u * s) @ vh, rtol=0, atol=1e-5)
    torch.testing.assert_close(a.T @ a, torch.diag(s), rtol=0, atol=1e-5)
    torch.testing.assert_close(b @ b.T, torch.diag(s), rtol=0, atol=1e-5)
    peaks = a.gather(0, a.abs().argmax(0, keepdim=True))
    assert (peaks > 0).all()  # the sign convention
    torch.testing.assert_close(method.update_matrix().detach().double(), a @ b)  # scale 1


def test_start_against_a_token_norm() -> None:
    """On a model whose tokens have SmolLM2's norm (≈ 2.9; the tiny model's embedding rescaled),
    at the suite's budget (m = 256, r = 27, l = 100): the default's input-update rows have RMS
    norm √(r/m) ≈ 0.32 exactly (U_r has r orthonormal columns), a ninth of a token, and the
    experts add nothing; √Σ's rows are near-tokens (more than half a token's norm)."""
    loaded = tiny("causal")
    weight = loaded.model.get_input_embeddings().weight
    with torch.no_grad():
        weight.normal_(0.0, 2.9 / 8.0, generator=torch.Generator().manual_seed(0))  # √64 = 8
    ctx = InitContext(loaded.model.get_input_embeddings(), torch.Generator(), loaded.tokenizer)
    token = float(vocab_init(ctx, 200).norm(dim=1).mean())
    assert 2.7 < token < 3.1
    options = {"num_tokens": 61, "rank": 27, "max_length": 256, "long_tokens": 100}
    rows: dict[str, torch.Tensor] = {}
    for svd_init in ("vectors", "sqrt_sigma"):
        method = lrpt.build_method("ept", loaded.model, loaded.tokenizer, seed=0,
                                   svd_init=svd_init, **options)  # fmt: skip
        rows[svd_init] = method.update_matrix().detach().norm(dim=1)  # (m,)
        short = method.prompt_embeddings.detach()
        if svd_init == "vectors":
            assert torch.equal(method.amended(short), torch.zeros_like(short))
    rms = float(rows["vectors"].square().mean().sqrt())
    assert rms == pytest.approx(math.sqrt(27 / 256), rel=1e-4)
    assert rms < 0.12 * token and float(rows["vectors"].max()) < 0.25 * token
    assert float(rows["sqrt_sigma"].mean()) > 0.5 * token


def test_svd_factors_fix_signs() -> None:
    m = torch.randn(12, 9, generator=torch.Generator().manual_seed(0))
    a1, b1 = svd_factors(m, 3)
    a2, b2 = svd_factors(-m, 3)  # same singular vectors up to sign
    assert (a1.gather(0, a1.abs().argmax(0, keepdim=True)) > 0).all()
    torch.testing.assert_close(a2, a1, rtol=0, atol=1e-6)  # the sign went to B
    torch.testing.assert_close(b2, -b1, rtol=0, atol=1e-6)


def test_expert_init_like_linear() -> None:
    method = _built(hidden=8, expert_init="linear")
    assert isinstance(method, EPT)
    for tensor, fan_in in [(method.expert_in, 64), (method.expert_in_bias, 64),
                           (method.expert_out, 8), (method.expert_out_bias, 8),
                           (method.gate, 64)]:  # fmt: skip
        bound = 1 / math.sqrt(fan_in)
        assert 0.8 * bound < tensor.detach().abs().max() <= bound


def test_expert_output_layer_starts_at_zero() -> None:
    """The default: the output layer is exactly zero, so the experts add nothing (P = P_f);
    the input layer and the gate are the linear init's, draw for draw."""
    zero, linear = _built(hidden=8), _built(hidden=8, expert_init="linear")
    assert zero.config.expert_init == "zero_out"
    assert torch.equal(zero.expert_out, torch.zeros(4, 8, 64))
    assert torch.equal(zero.expert_out_bias, torch.zeros(4, 64))
    for name in ("prompt_embeddings", "lowrank_a", "lowrank_b", "expert_in", "expert_in_bias",
                 "gate"):  # fmt: skip
        assert torch.equal(getattr(zero, name), getattr(linear, name)), name
    short = zero.prompt_embeddings.detach()
    assert torch.equal(zero.materialise().detach(), zero.fused(short).detach())
    assert not torch.equal(linear.materialise().detach(), linear.fused(short).detach())


def test_prompt_by_hand() -> None:
    """P = Σ_k softmax(P_s W_g)_k ⊙ (W1_k ReLU(W2_k P_s + b2_k) + b1_k) + P_s
    + softmax(P_s Δᵀ/√d) Δ, and each module off removes exactly its term."""
    method = _built(num_tokens=5, rank=3, max_length=11, long_tokens=7, experts=3, hidden=6,
                    expert_init="linear")  # fmt: skip
    p_s = method.prompt_embeddings.detach()
    delta = method.lowrank_a.detach() @ method.lowrank_b.detach()
    fused = p_s + torch.softmax(p_s @ delta.T / 8.0, dim=-1) @ delta  # √64 = 8
    gates = torch.softmax(p_s @ method.gate.detach(), dim=-1)
    amend = torch.zeros_like(p_s)
    for k in range(3):
        hidden = F.relu(p_s @ method.expert_in[k].detach() + method.expert_in_bias[k].detach())
        space = hidden @ method.expert_out[k].detach() + method.expert_out_bias[k].detach()
        amend += gates[:, k : k + 1] * space
    got = method.materialise().detach()
    torch.testing.assert_close(got, fused + amend, rtol=1e-5, atol=1e-5)
    assert method.prompt(2).shape == (1, 5, 64)

    no_fusion = _built(fusion=False, num_tokens=5, rank=3, max_length=11, long_tokens=7,
                       experts=3, hidden=6, expert_init="linear")  # fmt: skip
    no_fusion = no_fusion.materialise().detach()
    torch.testing.assert_close(no_fusion, p_s + amend, rtol=1e-5, atol=1e-5)
    no_spaces = _built(multi_space=False, num_tokens=5, rank=3, max_length=11, long_tokens=7)
    torch.testing.assert_close(no_spaces.materialise().detach(), fused, rtol=1e-5, atol=1e-5)


def test_all_off_is_dept() -> None:
    """Same seed ⇒ the same tensors as dept (same draws), and the same prompt and update."""
    ept, dept = _built("ept", seed=5, **OFF), _built("dept", seed=5)
    assert ept.state_dict().keys() == dept.state_dict().keys()
    assert all(torch.equal(v, dept.state_dict()[k]) for k, v in ept.state_dict().items())
    assert ept.scale == dept.scale == 8.0 / math.sqrt(30)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # equal, non-trivial tensors in both
        for tensor in dept.state_dict().values():
            tensor.copy_(torch.randn(tensor.shape, generator=g))
        ept.load_state_dict(dept.state_dict())
    positions = torch.tensor([[-1, 0, 1, 2, 300], [255, 256, 7, 3, -1]])
    assert torch.equal(ept.input_update(positions), dept.input_update(positions))
    assert torch.equal(ept.materialise(), dept.materialise())
    assert torch.equal(ept.prompt(2), dept.prompt(2))
    groups = [[id(p) for p in group["params"]] for group in ept.param_groups(0.3)]
    assert groups == [[id(ept.prompt_embeddings)], [id(ept.lowrank_a), id(ept.lowrank_b)]]


def test_decomposition_off_inits_like_dept() -> None:
    """decomposition off: P_s, A, B are dept's (same seed), the update is scaled by α/√r."""
    ept, dept = _built("ept", seed=2, decomposition=False), _built("dept", seed=2)
    for name in ("prompt_embeddings", "lowrank_a", "lowrank_b"):
        assert torch.equal(getattr(ept, name), getattr(dept, name))
    with torch.no_grad():
        ept.lowrank_b.normal_(generator=torch.Generator().manual_seed(0))
    expected = (8.0 / math.sqrt(30)) * (ept.lowrank_a @ ept.lowrank_b)
    assert torch.equal(ept.update_matrix(), expected)


def test_param_groups() -> None:
    method = _built(lowrank_lr=1e-4)
    groups = method.param_groups(0.4)
    assert [(g["name"], g["lr"]) for g in groups] == [("prompt", 0.4), ("lowrank", 1e-4)]
    assert [id(p) for p in groups[1]["params"]] == [id(method.lowrank_a), id(method.lowrank_b)]
    prompt_side = {"prompt_embeddings", "expert_in", "expert_in_bias", "expert_out",
                   "expert_out_bias", "gate"}  # fmt: skip
    named = dict(method.named_parameters())
    assert {id(p) for p in groups[0]["params"]} == {id(named[n]) for n in prompt_side}
    assert sum(len(g["params"]) for g in groups) == len(named)


def _gradients(**options) -> dict[str, float]:
    method = _built(num_tokens=4, rank=2, max_length=8, long_tokens=6, hidden=5, **options)
    positions = torch.tensor([[0, 1, 2, 3, -1]])
    loss = method.materialise().square().sum() + method.input_update(positions).square().sum()
    loss.backward()
    return {n: float(p.grad.abs().sum()) for n, p in method.named_parameters()}


def test_every_tensor_gets_a_gradient() -> None:
    assert all(value > 0 for value in _gradients(expert_init="linear").values())


def test_zero_output_layer_gradients() -> None:
    """With the output layer at zero, it gets a gradient at once; the experts' input layer and
    the gate get exactly none until it has moved (as LoRA's zero B)."""
    grads = _gradients()
    silent = {"expert_in", "expert_in_bias", "gate"}
    assert {name for name, value in grads.items() if value == 0} == silent


def test_checks_that_only_matter_with_decomposition() -> None:
    EPTConfig(num_tokens=120, rank=101, decomposition=False)  # no long prompt, no SVD: fine
    with pytest.raises(ValueError, match=r"rank must be ≤ the embedding size 16 .*got 20"):
        describe("ept", 16, rank=20)
    assert describe("ept", 16, rank=20, decomposition=False)["trainable_params"] > 0
