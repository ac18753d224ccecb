"""The position-wise input update of dept and ept inside a PromptedModel: independent of the
batch's padding side and length; pads, the lead token, targets and positions ≥ m get none."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_prompted

import lrpt
from lrpt.methods.blocks import rows_at
from lrpt.model import IGNORE

SHORT, LONG = "a quiet film", "loud and very long, longer than the other one"
DECODER_IDS = torch.tensor([[0, 40, 50, 60, 70]])  # the same decoder input for every row


def _prompted(key: str, family: str, dtype=torch.float32, **options) -> lrpt.PromptedModel:
    """``key`` on the tiny model of ``family`` with non-zero random low-rank tensors."""
    pm = tiny_prompted(key, family, **options)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in pm.method.lowrank_parameters():
            param.copy_(0.1 * torch.randn(param.shape, generator=g))
    return pm.to(dtype).eval()


def _logits(pm: lrpt.PromptedModel, texts: list[str], side: str) -> tuple[torch.Tensor, ...]:
    pm.tokenizer.padding_side = side
    batch = pm.tokenizer(texts, return_tensors="pt", padding=True)
    extra = {}
    if pm.family == "seq2seq":
        extra["decoder_input_ids"] = DECODER_IDS.expand(len(texts), -1)
    with torch.no_grad():
        logits = pm(batch["input_ids"], batch["attention_mask"], **extra).logits
    return logits, batch["attention_mask"]


@pytest.mark.parametrize("max_length", [256, 4])  # 4: some tokens are past m
@pytest.mark.parametrize(
    ("family", "share_prefix"), [("causal", True), ("causal", False), ("seq2seq", False)]
)
@pytest.mark.parametrize("key", ["dept", "ept"])
def test_padding_invariance(key: str, family: str, share_prefix: bool, max_length: int) -> None:
    """One example's logits alone = inside a left-padded and a right-padded batch (causal: with
    the shared-prefix path and with the plain insertion path).

    In float64, so that the comparison tests the semantics and not float32 reduction order
    (which differs with the batch's length by up to ~1e-5 on the tiny T5's logits)."""
    pm = _prompted(key, family, torch.float64, max_length=max_length, rank=3)
    pm.share_prefix = share_prefix
    assert pm.shares_prefix() == share_prefix
    delta = pm.method.input_update(torch.arange(3)[None]).abs().sum()
    assert delta > 0  # the update is not trivially zero
    alone, _ = _logits(pm, [SHORT], "right")
    for side in ("left", "right"):
        batched, mask = _logits(pm, [SHORT, LONG], side)
        # causal: logits at the input positions, keep the real tokens; seq2seq: decoder logits
        mine = batched[0][mask[0].bool()] if family == "causal" else batched[0]
        assert mask[0].sum() < mask.shape[1]  # the example really was padded
        torch.testing.assert_close(mine, alone[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("key", ["dept", "ept"])
def test_update_only_on_real_input_tokens_below_m(key: str) -> None:
    """Inserted embeddings differ from the plain token embeddings exactly at input tokens whose
    position (BOS excluded) is < m; pads, BOS, targets and positions ≥ m are untouched."""
    m = 3
    pm = _prompted(key, "causal", max_length=m, rank=2, num_tokens=5)
    pm.tokenizer.padding_side = "left"
    batch = pm.tokenizer([SHORT, LONG], return_tensors="pt", padding=True)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    labels = torch.full_like(ids, IGNORE)
    labels[:, -2:] = ids[:, -2:]  # the last two tokens are targets
    ins = pm.insert(ids, mask, labels)
    plain = pm.model.get_input_embeddings()(ids)  # (B, L, d)
    placed = ins.embeds.gather(1, ins.token_positions[..., None].expand_as(plain))  # (B, L, d)
    changed = (placed != plain).any(-1)  # (B, L)

    position = mask.cumsum(1) - 2  # index inside the unpadded input, BOS excluded
    is_bos = (ids == pm.tokenizer.bos_token_id) & (mask == 1)
    expected = (mask == 1) & ~is_bos & (position < m) & (labels == IGNORE)
    assert torch.equal(changed, expected)
    assert int(expected.sum()) == 2 * m  # both rows: m updated tokens each
    update = pm.method.update_matrix().detach()
    for row in range(2):
        first = int((mask[row] == 0).sum()) + 1  # the token after BOS
        diff = placed[row, first : first + m] - plain[row, first : first + m]
        torch.testing.assert_close(diff, update.to(diff.dtype), rtol=0, atol=1e-6)


def test_rows_at_gradient_is_bit_for_bit() -> None:
    """The gathered rows' gradient sums rows that share a position in one fixed order: repeated
    backward passes give the same bits, and those of torch's deterministic mode. Advanced
    indexing (``update[index]``) gave a different sum almost every time at these sizes (EPT's
    m = 256 on a 576-wide model, a batch of 16 inputs of 190 tokens)."""
    g = torch.Generator().manual_seed(0)
    positions = torch.randint(-1, 300, (16, 190), generator=g)
    upstream = torch.randn(16, 190, 576, generator=g)

    def grad() -> torch.Tensor:
        update = torch.zeros(256, 576, requires_grad=True)
        (rows_at(update, positions) * upstream).sum().backward()
        assert update.grad is not None
        return update.grad

    first = grad()
    assert all(torch.equal(first, grad()) for _ in range(10))
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        update = torch.zeros(256, 576, requires_grad=True)
        index = positions.clamp(0, 255)
        rows = torch.where(((positions >= 0) & (positions < 256))[..., None], update[index], 0.0)
        (rows * upstream).sum().backward()
    finally:
        torch.use_deterministic_algorithms(was)
    assert torch.equal(first, update.grad)
    # Position 3's gradient is the sum of the upstream gradients of the rows gathered from it.
    assert torch.allclose(first[3], upstream[positions == 3].sum(0), rtol=0, atol=1e-5)
