"""Gradient checkpointing of the frozen model: the same loss and gradients, fewer saved
activations, and the shared prefix still runs once per batch."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

import lrpt
from lrpt.checkpointing import checkpointable_layers, checkpointed_layers
from lrpt.model import IGNORE

TEXTS = ["a quiet film", "loud and very long, but fun", "ok"]


def _batch(loaded: lrpt.LoadedModel, family: str) -> dict[str, torch.Tensor]:
    tok = loaded.tokenizer
    batch = dict(tok(TEXTS, return_tensors="pt", padding=True))
    batch.pop("token_type_ids", None)
    if family == "causal":
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE)
    elif family == "seq2seq":
        batch["labels"] = tok(["yes", "no", "maybe"], return_tensors="pt", padding=True)[
            "input_ids"
        ]
    else:
        batch["labels"] = torch.tensor([0, 1, 1])
    return batch


def _step(pm: lrpt.PromptedModel, batch: dict) -> tuple[float, dict[str, torch.Tensor], int]:
    """Loss, the prompt's gradients and the bytes autograd keeps outside checkpointed layers."""
    pm.zero_grad(set_to_none=True)
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = pm(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in pm.named_parameters() if p.grad is not None}
    return out.loss.item(), grads, sum(saved)


@pytest.mark.parametrize(
    ("family", "share"),
    [("causal", True), ("causal", False), ("seq2seq", False), ("encoder", False)],
)
def test_checkpointing_gives_the_same_loss_and_gradients(family: str, share: bool) -> None:
    loaded = tiny(family)
    pm = lrpt.prompt_model("dpt", loaded.model, loaded.tokenizer, num_tokens=6, rank=3,
                           share_prefix=share)  # fmt: skip
    assert pm.shares_prefix() == share
    batch = _batch(loaded, family)
    loss, grads, kept = _step(pm, batch)
    pm.gradient_checkpointing = True
    loss_c, grads_c, kept_c = _step(pm, batch)
    # the replay recomputes the same operations on the same inputs: bit-identical on the CPU
    assert loss_c == loss
    assert grads.keys() == grads_c.keys() and {"method.A", "method.B"} <= set(grads)
    for name, grad in grads.items():
        assert torch.equal(grads_c[name], grad), name
    # what the layers would keep is recomputed instead: under half of it is kept here (the
    # tiny models' logits and embeddings, outside the layers, are most of what remains)
    assert kept_c < 0.5 * kept, (kept_c, kept)
    assert pm.shares_prefix() == share  # the shared prefix is not given up


def test_layers_are_restored_and_inference_is_untouched() -> None:
    loaded = tiny("causal")
    layers = checkpointable_layers(loaded.model)
    assert len(layers) == 2  # the tiny Llama's two decoder layers
    with checkpointed_layers(loaded.model):
        assert all("forward" in vars(layer) for layer in layers)
    assert not any("forward" in vars(layer) for layer in layers)
    pm = lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=4,
                           gradient_checkpointing=True).eval()  # fmt: skip
    batch = loaded.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        first = pm(**batch).logits
        pm.gradient_checkpointing = False
        assert torch.equal(pm(**batch).logits, first)


def test_a_model_without_checkpointable_layers_is_refused() -> None:
    refused = pytest.raises(ValueError, match="Linear has no layer transformers can checkpoint")
    with refused, checkpointed_layers(torch.nn.Linear(2, 2)):
        pass
