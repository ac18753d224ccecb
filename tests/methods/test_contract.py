"""The checks every method's tests share, parametrised over the methods: the papers' parameter
counts and tensor shapes, what the init seed draws, which tensors the prompt's gradient reaches,
config validation, and the instance-dependent methods' encoder contract. Each method's own file
keeps what is specific to it (its formula by hand, its init, its options); the forward and
training contract on every model family is tests/test_model.py's."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from conftest import tiny_method, tiny_prompted
from paper_counts import PAPER, Paper

from lrpt.accounting import describe
from lrpt.methods import METHODS, ModelDims
from lrpt.methods.blocks import MLPHead
from lrpt.model import IGNORE

TEXTS = ["a quiet film", "loud and very long"]
INSTANCE = sorted(key for key, cls in METHODS.items() if not cls.static)
HEADS = {"idpg": 1, "lopa": 2}  # the MLP heads (on the encoder output) of each of them
STATIC = sorted(key for key, cls in METHODS.items() if cls.static)

Shapes = dict[str, list[int]]
# The tensors a method trains, from the embedding size d and its options (lopa's and idpg's:
# their own files).
# fmt: off
TENSORS: dict[str, Callable[[int, dict[str, int]], Shapes]] = {
    "pt": lambda d, o: {"prompt_embeddings": [o["num_tokens"], d]},
    "dpt": lambda d, o: {"A": [o["num_tokens"], o["rank"]], "B": [o["rank"], d]},
    "lopt1": lambda d, o: {"U": [o["num_tokens"], o["rank"]], "V": [o["rank"], d]},
    "lopt2": lambda d, o: {"U": [d, o["rank"]], "V": [o["rank"], d]},
    "ulpt": lambda d, o: {"latent": [o["num_tokens"], o["rank"]], "scale": [d], "shift": [d]},
    "residual": lambda d, o: {
        "prompt_embeddings": [o["num_tokens"], d], "w1": [o["hidden"], d], "b1": [o["hidden"]],
        "w2": [d, o["hidden"]], "b2": [d], "norm_weight": [d], "norm_bias": [d],
    },
    "dept": lambda d, o: {
        "prompt_embeddings": [o["num_tokens"], d], "lowrank_a": [o["max_length"], o["rank"]],
        "lowrank_b": [o["rank"], d],
    },
}
# fmt: on


# --------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("paper", PAPER, ids=str)
def test_paper_count(paper: Paper) -> None:
    """The paper's count; the tensors it is made of; with ``defaults``, the same count with no
    option given."""
    info = describe(paper.method, paper.embed_dim, paper.encoder_dim, **paper.options)
    assert info["trainable_params"] == paper.count, paper.model
    assert sum(math.prod(shape) for shape in info["tensors"].values()) == paper.count
    if paper.method in TENSORS:
        assert info["tensors"] == TENSORS[paper.method](paper.embed_dim, paper.options)
    if paper.defaults:
        plain = describe(paper.method, paper.embed_dim, paper.encoder_dim)
        assert (plain["trainable_params"], plain["tensors"]) == (paper.count, info["tensors"])


# --------------------------------------------------------------------------- seeds
# What the init seed draws; every other tensor (zero- or one-initialised, or regenerated from
# another seed) is the same whatever the init seed.
# fmt: off
DRAWN = {
    "pt": {"prompt_embeddings"},
    "dpt": {"A", "B"},
    "lopt1": {"U", "V"},
    "lopt2": {"X0", "U", "V"},
    "ulpt": {"latent"},  # Â comes from projection_seed; s = 1, b = 0
    "residual": {"prompt_embeddings", "w1", "b1", "w2", "b2"},  # LayerNorm: 1 and 0
    "dept": {"prompt_embeddings", "lowrank_a"},  # B = 0
    "ept": {"prompt_embeddings", "lowrank_a", "lowrank_b", "expert_in", "expert_in_bias", "gate"},
    "idpg": {"mlp.down_weight", "mlp.up_weight"},  # the biases start at 0
    "lopa": {"prompt_shared", "mlp_u.down_weight", "mlp_u.up_weight",
             "mlp_v.down_weight", "mlp_v.up_weight"},
}
# fmt: on
OPTIONS = {"ulpt": {"groups": 3, "rank": 4}}  # three projections, all regenerated


def _tensors(method: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers, the non-persistent ones (frozen state) included."""
    return dict(method.named_parameters()) | dict(method.named_buffers())


@pytest.mark.parametrize("key", sorted(DRAWN))
def test_same_seed_is_bit_identical_and_global_rng_untouched(key: str) -> None:
    options = OPTIONS.get(key, {})
    torch.manual_seed(1)
    first = _tensors(tiny_method(key, seed=5, **options))
    torch.manual_seed(2)
    state = torch.get_rng_state()
    second = _tensors(tiny_method(key, seed=5, **options))
    assert torch.equal(state, torch.get_rng_state())
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name
    other = _tensors(tiny_method(key, seed=6, **options))
    assert {name for name, t in first.items() if not torch.equal(t, other[name])} == DRAWN[key]


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("key", STATIC)
def test_gradients_reach_trainable_tensors_only(key: str) -> None:
    """The prompt and the input update reach every parameter; frozen state needs no gradient."""
    method = tiny_method(key)
    loss = method.materialise().square().sum()
    update = method.input_update(torch.tensor([[0, 1, 2, -1]]))
    if update is not None:
        loss = loss + update.square().sum()
    loss.backward()
    for name, param in method.named_parameters():
        assert param.requires_grad and param.grad is not None, name
    assert not any(buffer.requires_grad for buffer in method.buffers())


# --------------------------------------------------------------------------- validation
# fmt: off
INVALID = [
    ("dpt", {"rank": 0}, r"rank .*0"),
    ("dpt", {"num_tokens": 0}, r"num_tokens .*0"),
    ("dpt", {"num_tokens": -3}, r"num_tokens .*-3"),
    ("dpt", {"init": "gaussian"}, r"init .*'gaussian'"),
    ("lopt1", {"rank": 0}, r"rank .*0"),
    ("lopt1", {"num_tokens": 0}, r"num_tokens .*0"),
    ("lopt1", {"num_tokens": 4, "rank": 5}, r"rank must be ≤ num_tokens \(4\).*got 5"),
    ("lopt2", {"rank": 0}, r"rank .*0"),
    ("lopt2", {"num_tokens": 0}, r"num_tokens .*0"),
    ("lopt2", {"activation": "sigmoid"}, r"activation .*'sigmoid'"),
    ("ulpt", {"rank": 0}, r"rank .*0"),
    ("ulpt", {"num_tokens": 0}, r"num_tokens .*0"),
    ("ulpt", {"groups": 0}, r"groups .*0"),
    ("ulpt", {"num_tokens": 4, "groups": 5}, r"groups must be ≤ num_tokens \(4\), got 5"),
    ("ulpt", {"projection_seed": -1}, r"projection_seed .*-1"),
    ("ulpt", {"projection_seed": 2**64}, r"projection_seed .*18446744073709551616"),
    ("ulpt", {"shift": "yes"}, r"shift .*'yes'"),
    ("ulpt", {"train_projection": 1}, r"train_projection .*1"),
    ("residual", {"hidden": 0}, r"hidden .*0"),
    ("residual", {"num_tokens": 0}, r"num_tokens .*0"),
    ("residual", {"norm_init": "one"}, "norm_init must be one of ones, token; got 'one'"),
    ("dept", {"num_tokens": 0}, "num_tokens must .*got 0"),
    ("dept", {"rank": -1}, "rank must .*got -1"),
    ("dept", {"max_length": 0}, "max_length must .*got 0"),
    ("dept", {"rank": 2.5}, "rank must .*got 2.5"),
    ("dept", {"alpha": -1.0}, "alpha must .*got -1.0"),
    ("dept", {"lowrank_lr": 0.0}, "lowrank_lr must .*got 0.0"),
    ("dept", {"lowrank_lr": -1e-3}, "lowrank_lr must .*got -0.001"),
    ("ept", {"experts": 0}, "experts must be an integer ≥ 1, got 0"),
    ("ept", {"hidden": -2}, "hidden must be an integer ≥ 1, got -2"),
    ("ept", {"long_tokens": 0}, "long_tokens must be an integer ≥ 1, got 0"),
    ("ept", {"fusion": "yes"}, "fusion must be true or false, got 'yes'"),
    ("ept", {"multi_space": 1}, "multi_space must be true or false, got 1"),
    ("ept", {"alpha": -0.5}, "alpha must be a number ≥ 0, got -0.5"),
    ("ept", {"lowrank_lr": 0}, "lowrank_lr must be a number > 0, got 0"),
    ("ept", {"svd_init": "sigma"}, "svd_init must be one of vectors, sqrt_sigma; got 'sigma'"),
    ("ept", {"expert_init": "zero"}, "expert_init must be one of zero_out, linear; got 'zero'"),
    ("ept", {"num_tokens": 120}, r"num_tokens must be ≤ long_tokens \(100\) .*got 120"),
    ("ept", {"rank": 101}, r"rank must be ≤ min\(long_tokens, max_length\) = 100 .*got 101"),
    ("ept", {"rank": 50, "max_length": 40}, r"= 40 .*got 50"),
    ("idpg", {"num_tokens": 0}, "num_tokens must be an integer ≥ 1, got 0"),
    ("idpg", {"hidden": -1}, "hidden must be an integer ≥ 1, got -1"),
    ("idpg", {"dropout": 1.5}, r"dropout must be a number in \[0, 1\), got 1.5"),
    ("idpg", {"bias_init": "ones"}, "bias_init must be one of zero, vocab; got 'ones'"),
    ("lopa", {"num_tokens": 0}, "num_tokens must be an integer ≥ 1, got 0"),
    ("lopa", {"hidden": 0}, "hidden must be an integer ≥ 1, got 0"),
    ("lopa", {"rank": 1.5}, "rank must be an integer ≥ 1, got 1.5"),
    ("lopa", {"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0"),
    ("lopa", {"dropout": -0.1}, r"dropout must be a number in \[0, 1\), got -0.1"),
]
# fmt: on


@pytest.mark.parametrize(("key", "options", "message"), INVALID)
def test_config_validation_names_field_and_value(key: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        METHODS[key].config_class(**options)


# --------------------------------------------------------------------------- instance-dependent
@pytest.mark.parametrize("key", INSTANCE)
def test_mlp_heads_init_as_the_lopa_reference(key: str) -> None:
    """Weights N(0, 0.02), biases 0 (LoPA's reference code, for LoPA and its IDPG baseline)."""
    heads = [m for m in tiny_method(key, hidden=512).modules() if isinstance(m, MLPHead)]
    assert len(heads) == HEADS[key]
    for mlp in heads:
        assert mlp.down_weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert mlp.up_weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert torch.equal(mlp.down_bias, torch.zeros_like(mlp.down_bias))
        assert torch.equal(mlp.up_bias, torch.zeros_like(mlp.up_bias))


@pytest.mark.parametrize("key", INSTANCE)
def test_dropout_in_training_mode_only(key: str) -> None:
    """Dropout 0.1 on the encoder output (the reference's hidden_dropout_prob) in every head:
    two training-mode prompts of the same input differ, eval-mode ones are equal; dropout 0 is
    deterministic."""
    pm = tiny_prompted(key)
    assert math.isclose(pm.method.config.dropout, 0.1)
    dropouts = [m.p for m in pm.method.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.1] * HEADS[key]
    condition = pm.encoder(TEXTS)
    pm.method.train()
    torch.manual_seed(0)
    assert not torch.equal(pm.method.prompt(2, condition), pm.method.prompt(2, condition))
    pm.method.eval()
    assert torch.equal(pm.method.prompt(2, condition), pm.method.prompt(2, condition))
    plain = tiny_method(key, dropout=0.0).train()
    assert torch.equal(plain.prompt(2, condition), plain.prompt(2, condition))


@pytest.mark.parametrize("key", INSTANCE)
def test_prompt_differs_between_inputs(key: str) -> None:
    pm = tiny_prompted(key).eval()
    batch = pm.tokenizer(TEXTS, return_tensors="pt", padding=True)
    prompt = pm.prompt_rows(batch["input_ids"]).detach()
    assert prompt.shape == (2, 10, 64)
    assert (prompt[0] - prompt[1]).abs().max() > 1e-6


@pytest.mark.parametrize("key", INSTANCE)
def test_prompted_model_forward_gradients_and_texts(key: str) -> None:
    """Every tensor trains; the prompt comes from the input text, decoded from the ids or given."""
    pm = tiny_prompted(key)
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


@pytest.mark.parametrize("key", INSTANCE)
def test_needs_an_encoder_and_a_condition(key: str) -> None:
    cls = METHODS[key]
    with pytest.raises(ValueError, match="needs an input encoder"):
        cls(cls.config_class(), ModelDims(embed_dim=8))
    method = cls(cls.config_class(), ModelDims(embed_dim=8, encoder_dim=6))
    assert not method.static
    with pytest.raises(ValueError, match="needs a condition"):
        method.prompt(2)
    with pytest.raises(ValueError, match=r"condition must have shape \(3, 6\), got \(2, 6\)"):
        method.prompt(3, torch.zeros(2, 6))
    with pytest.raises(ValueError, match=r"condition must have shape \(2, 6\), got \(2, 5\)"):
        method.prompt(2, torch.zeros(2, 5))
    with pytest.raises(TypeError, match="instance-dependent"):
        method.materialise()
