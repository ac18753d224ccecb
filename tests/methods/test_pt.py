"""pt: the papers' parameter counts (n = 100)."""

from __future__ import annotations

import pytest

from lrpt.accounting import describe


@pytest.mark.parametrize(
    ("model", "d", "expected"),
    [("T5-small", 512, 51_200), ("T5-base", 768, 76_800), ("T5-large", 1024, 102_400)],
)
def test_paper_param_counts(model: str, d: int, expected: int) -> None:
    info = describe("pt", d, num_tokens=100)
    assert info["trainable_params"] == expected, model
    assert info["tensors"] == {"prompt_embeddings": [100, d]}
