"""PromptedModel: the method contract on every family, prompt insertion, equivalence, generate."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny, tiny_encoder, tiny_prompted
from torch.nn import functional as F

import lrpt
from lrpt.model import IGNORE

TEXTS = ["a quiet film", "loud and very long"]
PROMPT_IDS = torch.tensor([40, 50, 60, 70, 80])  # real token ids used as the "prompt"


def _batch(pm: lrpt.PromptedModel, side: str = "right") -> dict[str, torch.Tensor]:
    pm.tokenizer.padding_side = side
    batch = dict(pm.tokenizer(TEXTS, return_tensors="pt", padding=True))
    if pm.family == "causal":  # the last 4 tokens of each row are the target, the rest input
        target = torch.zeros_like(batch["attention_mask"], dtype=torch.bool)
        for row, mask in enumerate(batch["attention_mask"]):
            last = int(mask.nonzero().max())
            target[row, last - 3 : last + 1] = True
        batch["labels"] = batch["input_ids"].masked_fill(~target, IGNORE)
    elif pm.family == "seq2seq":
        batch["labels"] = pm.tokenizer(["yes", "no"], return_tensors="pt", padding=True)[
            "input_ids"
        ]
    else:
        batch["labels"] = torch.tensor([0, 1])
    return batch


@pytest.mark.parametrize("family", ["causal", "seq2seq", "encoder"])
@pytest.mark.parametrize("key", sorted(lrpt.METHODS))
def test_contract(key: str, family: str) -> None:
    """Shapes and dtype; after optimizer steps base weights are unchanged, method weights moved."""
    pm = tiny_prompted(key, family)
    batch = _batch(pm)
    frozen = {n: p.detach().clone() for n, p in pm.model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in pm.method.named_parameters() if p.requires_grad}
    head = [p.detach().clone() for p in pm.head_parameters()]
    assert frozen and trainable
    assert (len(head) > 0) == (family == "encoder")

    out = pm(**batch)
    B, L = batch["input_ids"].shape
    V = pm.model.config.vocab_size
    if family == "causal":
        expected = (B, L, V)
    elif family == "seq2seq":
        expected = (B, batch["labels"].shape[1], V)
    else:
        expected = (B, 2)
    assert tuple(out.logits.shape) == expected
    assert out.logits.dtype == torch.float32
    assert torch.isfinite(out.loss)

    opt = torch.optim.AdamW(pm.param_groups(1e-2), weight_decay=0.0)
    for _ in range(2):  # two steps: a zero-initialised factor moves its partner only at step 2
        opt.zero_grad()
        pm(**batch).loss.backward()
        opt.step()
    for name, param in pm.model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), f"frozen weight {name} changed"
    for name, param in pm.method.named_parameters():
        if param.requires_grad:
            assert not torch.equal(param, trainable[name]), f"{key}.{name} did not train"
    for before, after in zip(head, pm.head_parameters(), strict=True):
        assert not torch.equal(before, after)


@pytest.mark.parametrize("family", ["causal", "seq2seq", "encoder"])
@pytest.mark.parametrize("key", sorted(k for k, c in lrpt.METHODS.items() if c.static))
def test_materialise_equals_inserted_rows(key: str, family: str) -> None:
    pm = tiny_prompted(key, family)
    batch = _batch(pm, "left")
    ins = pm.insert(batch["input_ids"], batch["attention_mask"])
    n = pm.method.num_tokens
    expected = pm.method.materialise().detach()  # (n, d)
    for row in range(len(TEXTS)):
        is_prompt = torch.ones(ins.embeds.shape[1], dtype=torch.bool)
        is_prompt[ins.token_positions[row]] = False
        rows = ins.embeds[row][is_prompt]
        assert rows.shape == (n, expected.shape[1])
        assert torch.equal(rows, expected)


def _set_prompt_to_tokens(pm: lrpt.PromptedModel, ids: torch.Tensor) -> None:
    with torch.no_grad():
        pm.method.prompt_embeddings.copy_(pm.model.get_input_embeddings()(ids))


def _reference_batch(rows: list[list[int]], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span], mask[i, span] = torch.tensor(row), 1
    return ids, mask


def _with_prompt_tokens(pm: lrpt.PromptedModel, text: str) -> list[int]:
    """The plain model's input for ``text`` with PROMPT_IDS where lrpt inserts the prompt: after
    BOS (causal), after CLS (encoder), before the input (seq2seq)."""
    tok, prompt = pm.tokenizer, PROMPT_IDS.tolist()
    if pm.family == "causal":
        return [tok.bos_token_id, *prompt, *tok(text, add_special_tokens=False)["input_ids"]]
    if pm.family == "encoder":
        return [tok.cls_token_id, *prompt, *tok(text)["input_ids"][1:]]
    return [*prompt, *tok(text)["input_ids"]]


def _causal_logits(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A plain causal model's logits on a padded batch, positions counted over real tokens."""
    return model(
        input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)
    ).logits


@pytest.mark.parametrize("side", ["left", "right"])
def test_causal_equivalence_with_real_tokens(side: str) -> None:
    """Prompt = embeddings of ids t ⇒ logits on the input = plain logits on [BOS] + t + x."""
    pm = tiny_prompted("pt", "causal", num_tokens=len(PROMPT_IDS))
    _set_prompt_to_tokens(pm, PROMPT_IDS)
    batch = _batch(pm, side)
    got = pm(batch["input_ids"], batch["attention_mask"]).logits

    ids, mask = _reference_batch([_with_prompt_tokens(pm, t) for t in TEXTS], side)
    ref = _causal_logits(pm.model, ids, mask)
    n = len(PROMPT_IDS)
    for i in range(len(TEXTS)):
        mine = got[i][batch["attention_mask"][i].bool()]
        theirs = ref[i][mask[i].bool()]
        theirs = torch.cat([theirs[:1], theirs[1 + n :]])  # drop the prompt rows, keep BOS
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-5)


def test_encoder_equivalence_prompt_after_cls() -> None:
    pm = tiny_prompted("pt", "encoder", num_tokens=len(PROMPT_IDS))
    _set_prompt_to_tokens(pm, PROMPT_IDS)
    batch = _batch(pm, "right")
    got = pm(batch["input_ids"], batch["attention_mask"]).logits
    ids, mask = _reference_batch([_with_prompt_tokens(pm, t) for t in TEXTS], "right")
    ref = pm.model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("family", "side"), [("causal", "left"), ("seq2seq", "right")])
def test_generate_matches_plain_model(family: str, side: str) -> None:
    pm = tiny_prompted("pt", family, num_tokens=len(PROMPT_IDS))
    _set_prompt_to_tokens(pm, PROMPT_IDS)
    batch = _batch(pm, side)
    got = pm.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=6,
                      do_sample=False)  # fmt: skip
    ids, mask = _reference_batch([_with_prompt_tokens(pm, t) for t in TEXTS], side)
    ref = pm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                            pad_token_id=pm.tokenizer.pad_token_id)  # fmt: skip
    if family == "causal":  # a decoder-only model's output starts with its input
        ref = ref[:, ids.shape[1] :]
        assert got.shape == (2, 6)
    assert torch.equal(got, ref)


def test_causal_generate_rejects_right_padding() -> None:
    pm = tiny_prompted("pt", "causal", num_tokens=3)
    batch = _batch(pm, "right")
    with pytest.raises(ValueError, match="left padding"):
        pm.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=2)


def _plain_causal_loss(pm: lrpt.PromptedModel, batch: dict[str, torch.Tensor]) -> float:
    """The loss of ``pm`` on a left-padded ``batch`` computed without lrpt: vocab init makes each
    prompt row a token's embedding, so the plain model reads [BOS] + those tokens + the input,
    and the mean cross-entropy is taken over the batch's target labels (none on the prompt)."""
    table = pm.model.get_input_embeddings().weight.detach()
    prompt = [int((table == row).all(1).nonzero()[0]) for row in pm.method.materialise().detach()]
    rows, golds = [], []
    for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                 strict=True):  # fmt: skip
        real, gold = ids[mask.bool()].tolist(), labels[mask.bool()].tolist()
        rows.append([real[0], *prompt, *real[1:]])
        golds.append([IGNORE] * (1 + len(prompt)) + gold[1:])
    ids, mask = _reference_batch(rows, "left")
    gold = _reference_batch(golds, "left")[0].masked_fill(mask == 0, IGNORE)
    with torch.no_grad():
        logits = _causal_logits(pm.model, ids, mask)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), gold[:, 1:].flatten(),
                           ignore_index=IGNORE).item()  # fmt: skip


def test_labels_on_prompt_rows_are_ignored_and_loss_is_pinned() -> None:
    """The causal loss only covers input tokens; its value on the seeded tiny model is pinned."""
    pm = tiny_prompted("pt", "causal", num_tokens=4)
    batch = _batch(pm, "left")
    ins = pm.insert(batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert int((ins.labels != IGNORE).sum()) == 2 * 4
    assert int(ins.attention_mask.sum()) == int(batch["attention_mask"].sum()) + 2 * 4
    # Where 5.6068 comes from: the plain model's mean cross-entropy on the same tokens, computed
    # without lrpt by _plain_causal_loss (5.606801); lrpt's loss must be that number.
    assert _plain_causal_loss(pm, batch) == pytest.approx(5.6068, abs=2e-4)
    assert pm(**batch).loss.item() == pytest.approx(5.6068, abs=2e-4)


def test_trainable_counts_split_method_and_head() -> None:
    pm = tiny_prompted("pt", "encoder", num_tokens=7)
    counts = pm.num_trainable()
    assert counts == {"method": 7 * 64, "head": 64 * 2 + 2}


@pytest.mark.parametrize("init", ["vocab", "text", "random"])
def test_pt_inits(init: str) -> None:
    opts = {"init_text": "good film"} if init == "text" else {}
    pm = tiny_prompted("pt", "causal", num_tokens=12, init=init, **opts)
    prompt = pm.method.materialise().detach()
    table = pm.model.get_input_embeddings().weight.detach()
    if init == "text":
        ids = pm.tokenizer("good film", add_special_tokens=False)["input_ids"]
        expected = table[torch.tensor(ids)[torch.arange(12) % len(ids)]]
        assert torch.equal(prompt, expected)
    elif init == "vocab":
        hits = [(table == row).all(1).any() for row in prompt]
        assert all(hits)
    else:
        assert prompt.std().item() == pytest.approx(table.std().item(), rel=0.3)


def test_input_encoder_never_sees_target_tokens() -> None:
    loaded = tiny("causal")
    pm = lrpt.prompt_model("idpg", loaded.model, loaded.tokenizer, encoder=tiny_encoder())
    tok = loaded.tokenizer
    text, target = "a quiet film", " great"
    ids = tok(text)["input_ids"] + tok(target, add_special_tokens=False)["input_ids"]
    n_target = len(ids) - len(tok(text)["input_ids"])
    input_ids = torch.tensor([ids])
    labels = torch.tensor([[IGNORE] * (len(ids) - n_target) + ids[-n_target:]])
    got = pm.condition(input_ids, None, labels)
    torch.testing.assert_close(got, pm.encoder([text]), rtol=0, atol=0)
    assert not torch.equal(got, pm.encoder([text + target]))


@pytest.mark.parametrize("share", [True, False])
def test_half_precision_model_with_float32_prompt(share: bool) -> None:
    loaded = tiny("causal")
    model = loaded.model.to(torch.bfloat16)
    pm = lrpt.prompt_model("ulpt", model, loaded.tokenizer, num_tokens=4, share_prefix=share)
    assert pm.method.materialise().dtype == torch.float32
    batch = _batch(pm, "left")
    out = pm(**batch)
    assert out.logits.dtype == torch.bfloat16
    out.loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32
               for p in pm.method.parameters() if p.requires_grad)  # fmt: skip


def test_after_prefix_names_the_input_part() -> None:
    """The input that follows a shared ``[BOS] + prompt`` prefix: BOS masked out, its label
    ignored; ``None`` when only some rows start with BOS."""
    pm = tiny_prompted("pt", "causal", num_tokens=3)
    batch = _batch(pm, "left")
    labels = batch["input_ids"].clone()  # a label on every token, the BOS's included
    rest = pm.after_prefix(batch["input_ids"], batch["attention_mask"], labels)
    assert rest is not None and rest.with_lead
    B, L = batch["input_ids"].shape
    assert rest.embeds.shape == (B, L, pm.method.dims.embed_dim)
    first = batch["attention_mask"].argmax(1)  # each row's BOS column (left padding)
    assert rest.lead_cols.sum(1).tolist() == [1] * B
    assert rest.lead_cols[torch.arange(B), first].all()
    assert torch.equal(rest.rest_mask, batch["attention_mask"].masked_fill(rest.lead_cols, 0))
    assert rest.labels is not None and (rest.labels[rest.lead_cols] == IGNORE).all()
    assert torch.equal(rest.labels[~rest.lead_cols], labels[~rest.lead_cols])
    ids = batch["input_ids"].clone()
    ids[0, first[0]] = 40  # row 0 no longer starts with BOS
    assert pm.after_prefix(ids, batch["attention_mask"]) is None


@pytest.mark.parametrize("share", [True, False])
def test_head_gets_contiguous_hidden_states(share: bool) -> None:
    """``logits_to_keep`` slices the hidden states; the head's input is made contiguous (a
    strided matmul is far slower on the CPU), once per model, with the same logits."""
    pm = tiny_prompted("pt", "causal", share_prefix=share)
    lrpt.prompt_model("pt", pm.model, pm.tokenizer, num_tokens=3, seed=0)  # a second prompt
    head = pm.model.get_output_embeddings()
    assert len(head._forward_pre_hooks) == 1  # registered once per model
    seen: list[bool] = []
    handle = head.register_forward_hook(lambda m, args, out: seen.append(args[0].is_contiguous()))
    batch = {k: v for k, v in _batch(pm, side="left").items() if k != "labels"}
    with torch.no_grad():
        last = pm(**batch, logits_to_keep=2).logits
        full = pm(**batch).logits
    handle.remove()
    assert len(seen) >= 2 and all(seen)  # (the shared prefix runs the head too)
    torch.testing.assert_close(last, full[:, -2:], rtol=1e-5, atol=1e-5)
