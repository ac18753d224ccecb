"""idpg: the paper's parameter count, init, the prompt by hand, a PromptedModel with an encoder."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny, tiny_encoder

import lrpt
from lrpt.accounting import describe
from lrpt.methods import ModelDims
from lrpt.methods.idpg import IDPG, IDPGConfig
from lrpt.model import IGNORE

TEXTS = ["a quiet film", "loud and very long"]


def test_paper_count_roberta_large() -> None:
    """S-IDPG-DNN, RoBERTa-large (k = d = 1024), h=256, n=10 (our defaults): 2.89M."""
    got = describe("idpg", 1024, encoder_dim=1024)
    assert got["config"] == {"num_tokens": 10, "hidden": 256, "dropout": 0.1, "bias_init": "zero"}
    assert got["trainable_params"] == 2_894_080 == 1024 * 256 + 256 + 256 * 10 * 1024 + 10 * 1024


@pytest.mark.parametrize(("d", "k", "n", "h"), [(64, 64, 10, 256), (96, 32, 3, 5)])
def test_count_formula_and_tensors(d: int, k: int, n: int, h: int) -> None:
    got = describe("idpg", d, encoder_dim=k, num_tokens=n, hidden=h)
    assert got["trainable_params"] == k * h + h + h * n * d + n * d
    assert got["tensors"] == {
        "mlp.down_weight": [h, k], "mlp.down_bias": [h],
        "mlp.up_weight": [n * d, h], "mlp.up_bias": [n * d],
    }  # fmt: skip


def _prompted(seed: int = 0, **options) -> lrpt.PromptedModel:
    loaded = tiny("causal")
    return lrpt.prompt_model("idpg", loaded.model, loaded.tokenizer, encoder=tiny_encoder(),
                             seed=seed, **options)  # fmt: skip


def test_init() -> None:
    """As the LoPA reference's IDPG: weights N(0, 0.02), biases 0, so the initial prompt is the
    instance term alone, W2 tanh(W1 e)."""
    pm = _prompted(hidden=512)
    mlp = pm.method.mlp
    assert mlp.down_weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert mlp.up_weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.equal(mlp.down_bias, torch.zeros_like(mlp.down_bias))
    assert torch.equal(mlp.up_bias, torch.zeros_like(mlp.up_bias))
    pm.method.eval()
    prompt = pm.method.prompt(2, pm.encoder(TEXTS)).detach()
    assert prompt.shape == (2, 10, 64)
    hidden = torch.tanh(pm.encoder(TEXTS).float() @ mlp.down_weight.detach().T)  # (2, h)
    torch.testing.assert_close(prompt, (hidden @ mlp.up_weight.detach().T).view(2, 10, 64))
    assert (prompt[0] - prompt[1]).abs().max() > 0


def test_dropout_in_training_mode_only() -> None:
    """Dropout 0.1 on the encoder output (the reference's hidden_dropout_prob): two training-mode
    prompts of the same input differ, eval-mode ones are equal; dropout 0 is deterministic."""
    pm = _prompted()
    assert pm.method.config.dropout == 0.1 and pm.method.mlp.dropout.p == 0.1
    condition = pm.encoder(TEXTS)
    pm.method.train()
    torch.manual_seed(0)
    first, second = pm.method.prompt(2, condition), pm.method.prompt(2, condition)
    assert not torch.equal(first, second)
    pm.method.eval()
    assert torch.equal(pm.method.prompt(2, condition), pm.method.prompt(2, condition))
    plain = _prompted(dropout=0.0).method.train()
    assert torch.equal(plain.prompt(2, condition), plain.prompt(2, condition))


def test_vocab_bias_option() -> None:
    """bias_init = "vocab" (the earlier reading): the output bias is a vocab prompt, drawn before
    the weights; the initial prompt is that prompt plus a small instance term, never ≈ 0."""
    pm = _prompted(hidden=512, bias_init="vocab", dropout=0.0)
    mlp = pm.method.mlp
    table = pm.model.get_input_embeddings().weight.detach()
    rows = mlp.up_bias.detach().view(10, 64)
    assert all((table == row).all(1).any() for row in rows)
    prompt = pm.method.prompt(2, pm.encoder(TEXTS)).detach()
    assert prompt.norm(dim=-1).min() > 0.5 * rows.norm(dim=-1).min()
    assert (prompt - rows).abs().max() > 0  # the instance term is there
    zero = _prompted(hidden=512).method.mlp
    assert not torch.equal(zero.down_weight, mlp.down_weight)  # the vocab draw came first


def test_same_seed_same_tensors_bit_for_bit() -> None:
    torch.manual_seed(1)
    first = _prompted(seed=3).method.state_dict()
    torch.manual_seed(2)
    second = _prompted(seed=3).method.state_dict()
    other = _prompted(seed=4).method.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    drawn = ("mlp.down_weight", "mlp.up_weight")  # the biases start at 0
    assert all(not torch.equal(first[k], other[k]) for k in drawn)


def test_prompt_by_hand() -> None:
    method = IDPG(IDPGConfig(num_tokens=3, hidden=5), ModelDims(embed_dim=4, encoder_dim=6))
    method.eval()  # no dropout
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in method.parameters():
            param.copy_(torch.randn(param.shape, generator=g))
    e = torch.randn(2, 6, generator=g)
    got = method.prompt(2, e).detach()
    p = {name: t.detach() for name, t in method.named_parameters()}
    for b in range(2):
        hidden = torch.tanh(p["mlp.down_weight"] @ e[b] + p["mlp.down_bias"])
        expected = (p["mlp.up_weight"] @ hidden + p["mlp.up_bias"]).view(3, 4)
        torch.testing.assert_close(got[b], expected, rtol=1e-5, atol=1e-6)


def test_prompt_differs_between_inputs() -> None:
    pm = _prompted().eval()
    batch = pm.tokenizer(TEXTS, return_tensors="pt", padding=True)
    prompt = pm.prompt_rows(batch["input_ids"]).detach()
    assert prompt.shape == (2, 10, 64)
    assert (prompt[0] - prompt[1]).abs().max() > 1e-6


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
    assert not torch.equal(decoded, pm(**batch, texts=list(reversed(TEXTS))).logits)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("num_tokens", 0, "num_tokens must be an integer ≥ 1, got 0"),
     ("hidden", -1, "hidden must be an integer ≥ 1, got -1"),
     ("dropout", 1.5, r"dropout must be a number in \[0, 1\), got 1.5"),
     ("bias_init", "ones", "bias_init must be one of zero, vocab; got 'ones'")],
)  # fmt: skip
def test_validation_names_field_and_value(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IDPGConfig(**{field: value})


def test_needs_an_encoder_and_a_condition() -> None:
    with pytest.raises(ValueError, match="needs an input encoder"):
        IDPG(IDPGConfig(), ModelDims(embed_dim=8))
    method = IDPG(IDPGConfig(), ModelDims(embed_dim=8, encoder_dim=6))
    with pytest.raises(ValueError, match="needs a condition"):
        method.prompt(2)
    with pytest.raises(ValueError, match=r"condition must have shape \(3, 6\), got \(2, 6\)"):
        method.prompt(3, torch.zeros(2, 6))
