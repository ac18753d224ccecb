"""lrpt.input_embeds: every method's input embeddings, fed to the frozen model as plain
``inputs_embeds``, give the logits of PromptedModel's own path (tiny random models)."""

from __future__ import annotations

import pytest
import torch
from conftest import randomise, tiny_prompted

from lrpt.input_embeds import InputEmbeds
from lrpt.methods import METHODS

TEXTS = ["a quiet film", "loud and very long, and then some", "ok"]
STATIC = sorted(key for key, cls in METHODS.items() if cls.static)
INSTANCE = sorted(key for key, cls in METHODS.items() if not cls.static)

pytestmark = pytest.mark.usefixtures("one_thread")


def prompted(key: str, **options: object):
    """Method ``key`` on the tiny causal model, every tensor of the method drawn from N(0, 1)
    (so DePT's and EPT's input updates, zero at init, are not)."""
    pm = tiny_prompted(key, **options).eval()
    randomise(pm.method, seed=1)
    return pm


def rows_of(pm) -> list[list[int]]:
    """Token rows of TEXTS: with the lead BOS, except the last one (no lead token)."""
    rows = [list(pm.tokenizer(t)["input_ids"]) for t in TEXTS[:-1]]
    return [*rows, list(pm.tokenizer(TEXTS[-1], add_special_tokens=False)["input_ids"])]


@pytest.mark.parametrize("key", sorted(METHODS))
def test_logits_equal_the_own_path(key: str) -> None:
    """Row by row, the frozen model on the embeddings (positions 0..T-1, no mask) gives
    PromptedModel's logits at every input position; the prompt rows sit after the lead token."""
    pm = prompted(key, share_prefix=False)
    rows = rows_of(pm)
    embeds = InputEmbeds(pm)(rows, TEXTS)
    n = pm.method.num_tokens
    assert [e.shape for e in embeds] == [(len(r) + n, pm.method.dims.embed_dim) for r in rows]
    with torch.no_grad():
        for row, text, e in zip(rows, TEXTS, embeds, strict=True):
            lead = row[0] == pm.lead_id
            inputs = [0, *range(n + 1, len(e))] if lead else list(range(n, len(e)))
            got = pm.model(inputs_embeds=e[None]).logits[0, inputs]
            want = pm(torch.tensor([row]), texts=[text]).logits[0]
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("key", sorted(METHODS))
def test_last_logits_equal_the_batched_own_path(key: str) -> None:
    """The own path on a left-padded batch (the shared prefix where the method has one) and the
    embeddings of each row alone agree on the next-token logits."""
    pm = prompted(key)
    rows = rows_of(pm)
    width = max(len(r) for r in rows)
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    with torch.no_grad():
        want = pm(ids, mask, texts=TEXTS, logits_to_keep=1).logits[:, -1]
        got = torch.stack(
            [pm.model(inputs_embeds=e[None]).logits[0, -1] for e in InputEmbeds(pm)(rows, TEXTS)]
        )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("key", STATIC)
def test_static_prompt_rows_are_cached_and_identical(key: str) -> None:
    """Every row with the lead token starts with the same ``[BOS] + prompt`` rows, bit for bit,
    call after call: the BOS embedding, then the method's prompt."""
    pm = prompted(key)
    embedder = InputEmbeds(pm)
    rows = rows_of(pm)[:-1]
    n = pm.method.num_tokens
    first, second = embedder(rows, TEXTS[:-1]), embedder(rows[::-1], TEXTS[:-1][::-1])
    head = first[0][: n + 1]
    bos = pm.model.get_input_embeddings().weight[pm.lead_id]
    assert torch.equal(head[0], bos)
    assert torch.equal(head[1:], pm.method.prompt(1)[0].detach())
    for e in [*first, *second]:
        assert torch.equal(e[: n + 1], head)


@pytest.mark.parametrize("key", INSTANCE)
def test_instance_prompt_follows_the_text(key: str) -> None:
    """An instance-dependent prompt is read from the raw text given, not from the token row."""
    pm = prompted(key)
    row = rows_of(pm)[0]
    n = pm.method.num_tokens
    same = InputEmbeds(pm)([row, row], [TEXTS[0], TEXTS[0]])
    other = InputEmbeds(pm)([row], [TEXTS[1]])[0]
    assert torch.equal(same[0], same[1])
    assert not torch.allclose(same[0][1 : n + 1], other[1 : n + 1], atol=1e-3)
    assert torch.equal(same[0][n + 1 :], other[n + 1 :])  # the input rows are the same


def test_bad_input() -> None:
    pm = prompted("pt")
    with pytest.raises(ValueError, match=r"rows \[1\] are"):
        InputEmbeds(pm)([[1, 70], []])
    assert InputEmbeds(pm)([]) == []
    encoder = tiny_prompted("pt", family="encoder")
    with pytest.raises(ValueError, match="need a causal LM; the model is of family 'encoder'"):
        InputEmbeds(encoder)
