"""idpg: the count formula, the initial prompt, the vocab-bias option, the prompt by hand (the
shared checks, those of the instance-dependent methods included: test_contract.py)."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import randomise, tiny_prompted

from lrpt.accounting import describe
from lrpt.methods import ModelDims
from lrpt.methods.idpg import IDPG, IDPGConfig

TEXTS = ["a quiet film", "loud and very long"]
_prompted = functools.partial(tiny_prompted, "idpg")


@pytest.mark.parametrize(
    ("d", "k", "n", "h"), [(64, 64, 10, 256), (96, 32, 3, 5), (1024, 1024, 10, 256)]
)  # the last: RoBERTa-large (k = d), the paper's 2,894,080 (test_contract.py)
def test_count_formula_and_tensors(d: int, k: int, n: int, h: int) -> None:
    got = describe("idpg", d, encoder_dim=k, num_tokens=n, hidden=h)
    assert got["trainable_params"] == k * h + h + h * n * d + n * d
    assert got["tensors"] == {
        "mlp.down_weight": [h, k], "mlp.down_bias": [h],
        "mlp.up_weight": [n * d, h], "mlp.up_bias": [n * d],
    }  # fmt: skip


def test_initial_prompt_is_the_instance_term() -> None:
    """As the LoPA reference's IDPG: biases 0 (test_contract.py), so the initial prompt is the
    instance term alone, W2 tanh(W1 e)."""
    pm = _prompted(hidden=512)
    mlp = pm.method.mlp
    pm.method.eval()
    prompt = pm.method.prompt(2, pm.encoder(TEXTS)).detach()
    assert prompt.shape == (2, 10, 64)
    hidden = torch.tanh(pm.encoder(TEXTS).float() @ mlp.down_weight.detach().T)  # (2, h)
    torch.testing.assert_close(prompt, (hidden @ mlp.up_weight.detach().T).view(2, 10, 64))
    assert (prompt[0] - prompt[1]).abs().max() > 0


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


def test_prompt_by_hand() -> None:
    method = IDPG(IDPGConfig(num_tokens=3, hidden=5), ModelDims(embed_dim=4, encoder_dim=6))
    method.eval()  # no dropout
    e = torch.randn(2, 6, generator=randomise(method))
    got = method.prompt(2, e).detach()
    p = {name: t.detach() for name, t in method.named_parameters()}
    for b in range(2):
        hidden = torch.tanh(p["mlp.down_weight"] @ e[b] + p["mlp.down_bias"])
        expected = (p["mlp.up_weight"] @ hidden + p["mlp.up_bias"]).view(3, 4)
        torch.testing.assert_close(got[b], expected, rtol=1e-5, atol=1e-6)
