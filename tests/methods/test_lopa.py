"""lopa: paper parameter counts, init, the prompt by hand, and a PromptedModel with an encoder."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny, tiny_encoder

import lrpt
from lrpt.accounting import describe
from lrpt.methods import ModelDims
from lrpt.methods.lopa import LoPA, LoPAConfig
from lrpt.model import IGNORE

TEXTS = ["a quiet film", "loud and very long"]


def _formula(d: int, k: int, n: int, h: int, r: int) -> int:
    return n * d + (k * h + h + h * d * r + d * r) + (k * h + h + h * n * r + n * r)


def test_paper_count_roberta_large() -> None:
    """NLU, RoBERTa-large (k = d = 1024), n=10, h=256, r=4 (our defaults): 1.60M."""
    got = describe("lopa", 1024, encoder_dim=1024)
    assert got["config"] == {"num_tokens": 10, "hidden": 256, "rank": 4, "dropout": 0.1}
    assert got["trainable_params"] == 1_597_992 == _formula(1024, 1024, 10, 256, 4)


@pytest.mark.parametrize(
    ("d", "expected"), [(2048, 4_229_130), (2560, 4_759_050), (3072, 5_288_970), (4096, 6_348_810)]
)
def test_paper_counts_code_tasks(d: int, expected: int) -> None:
    """Code tasks: CodeSage encoder k=1024, h=1024, n=10, r=1; DeepSeekCoder-1.3B, Phi-2, Phi-3,
    DeepSeekCoder-7B."""
    got = describe("lopa", d, encoder_dim=1024, num_tokens=10, hidden=1024, rank=1)
    assert got["trainable_params"] == expected == _formula(d, 1024, 10, 1024, 1)


@pytest.mark.parametrize(("d", "k", "n", "h", "r"), [(64, 64, 10, 256, 4), (96, 32, 3, 5, 2)])
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


def _prompted(seed: int = 0, **options) -> lrpt.PromptedModel:
    loaded = tiny("causal")
    return lrpt.prompt_model("lopa", loaded.model, loaded.tokenizer, encoder=tiny_encoder(),
                             seed=seed, **options)  # fmt: skip


def test_init() -> None:
    """Z_S rows are token embeddings; MLP weights N(0, 0.02), biases 0; prompt ≈ Z_S / 2."""
    pm = _prompted(hidden=512, rank=8)
    method = pm.method
    table = pm.model.get_input_embeddings().weight.detach()
    assert all((table == row).all(1).any() for row in method.prompt_shared.detach())
    for mlp in (method.mlp_u, method.mlp_v):
        assert mlp.down_weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert mlp.up_weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert torch.equal(mlp.down_bias, torch.zeros_like(mlp.down_bias))
        assert torch.equal(mlp.up_bias, torch.zeros_like(mlp.up_bias))
    method.eval()
    prompt = method.prompt(2, pm.encoder(TEXTS)).detach()
    half = method.prompt_shared.detach() / 2
    torch.testing.assert_close(prompt, half.expand(2, -1, -1), rtol=0.05, atol=1e-4)
    assert prompt.abs().sum() > 0


def test_same_seed_same_tensors_bit_for_bit() -> None:
    torch.manual_seed(1)
    first = _prompted(seed=3).method.state_dict()
    torch.manual_seed(2)
    second = _prompted(seed=3).method.state_dict()
    other = _prompted(seed=4).method.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["prompt_shared"], other["prompt_shared"])
    assert not torch.equal(first["mlp_u.up_weight"], other["mlp_u.up_weight"])


def test_prompt_by_hand() -> None:
    """P = Z_S ⊙ sigmoid(v uᵀ), u = W2u tanh(W1u e + b1u) + b2u (d × r), v likewise (n × r)."""
    method = LoPA(LoPAConfig(num_tokens=3, hidden=5, rank=2), ModelDims(embed_dim=4, encoder_dim=6))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in method.parameters():
            param.copy_(torch.randn(param.shape, generator=g))
    method.eval()
    e = torch.randn(2, 6, generator=g)
    got = method.prompt(2, e).detach()
    p = {name: t.detach() for name, t in method.named_parameters()}
    for b in range(2):
        u = p["mlp_u.up_weight"] @ torch.tanh(p["mlp_u.down_weight"] @ e[b] + p["mlp_u.down_bias"])
        v = p["mlp_v.up_weight"] @ torch.tanh(p["mlp_v.down_weight"] @ e[b] + p["mlp_v.down_bias"])
        u, v = (u + p["mlp_u.up_bias"]).view(4, 2), (v + p["mlp_v.up_bias"]).view(3, 2)
        expected = p["prompt_shared"] * torch.sigmoid(v @ u.T)
        torch.testing.assert_close(got[b], expected, rtol=1e-5, atol=1e-6)


def test_prompt_differs_between_inputs() -> None:
    pm = _prompted().eval()
    batch = pm.tokenizer(TEXTS, return_tensors="pt", padding=True)
    prompt = pm.prompt_rows(batch["input_ids"]).detach()
    assert prompt.shape == (2, 10, 64)
    assert (prompt[0] - prompt[1]).abs().max() > 1e-6


def test_dropout_is_active_in_training_only() -> None:
    method = _prompted(dropout=0.5).method
    e = tiny_encoder()(TEXTS)
    method.train()
    assert not torch.equal(method.prompt(2, e), method.prompt(2, e))
    method.eval()
    assert torch.equal(method.prompt(2, e), method.prompt(2, e))


def test_prompted_model_forward_gradients_and_texts() -> None:
    pm = _prompted()
    pm.tokenizer.padding_side = "left"
    batch = dict(pm.tokenizer(TEXTS, return_tensors="pt", padding=True))
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE)
    out = pm(**batch, labels=labels)
    assert out.logits.shape == (*batch["input_ids"].shape, pm.model.config.vocab_size)
    out.loss.backward()
    for name, param in pm.method.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    pm.eval()
    decoded = pm(**batch).logits
    given = pm(**batch, texts=TEXTS).logits
    assert torch.equal(decoded, given)
    other = pm(**batch, texts=list(reversed(TEXTS))).logits
    assert not torch.equal(decoded, other)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("num_tokens", 0, "num_tokens must be an integer ≥ 1, got 0"),
     ("hidden", 0, "hidden must be an integer ≥ 1, got 0"),
     ("rank", 1.5, "rank must be an integer ≥ 1, got 1.5"),
     ("dropout", 1.0, r"dropout must be a number in \[0, 1\), got 1.0"),
     ("dropout", -0.1, r"dropout must be a number in \[0, 1\), got -0.1")],
)  # fmt: skip
def test_validation_names_field_and_value(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoPAConfig(**{field: value})


def test_needs_an_encoder_and_a_condition() -> None:
    with pytest.raises(ValueError, match="needs an input encoder"):
        LoPA(LoPAConfig(), ModelDims(embed_dim=8))
    method = LoPA(LoPAConfig(), ModelDims(embed_dim=8, encoder_dim=6))
    assert not method.static
    with pytest.raises(ValueError, match="needs a condition"):
        method.prompt(2)
    with pytest.raises(ValueError, match=r"condition must have shape \(2, 6\), got \(2, 5\)"):
        method.prompt(2, torch.zeros(2, 5))
    with pytest.raises(TypeError, match="instance-dependent"):
        method.materialise()
    assert math.isclose(LoPAConfig().dropout, 0.1)
