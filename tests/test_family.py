"""Model families: a str enum that compares, prints and serialises as its value."""

from __future__ import annotations

import json

import pytest
from conftest import TINY, tiny

import lrpt
from lrpt.family import Family
from lrpt.model import family_of


def test_family_is_its_value() -> None:
    assert [str(f) for f in Family] == ["causal", "seq2seq", "encoder", "base"]
    assert Family.CAUSAL == "causal" and f"a {Family.ENCODER} model" == "a encoder model"
    assert json.dumps({"family": Family.SEQ2SEQ}) == '{"family": "seq2seq"}'
    assert Family("base") is Family.BASE
    assert "encoder" in {Family.ENCODER: 1}


@pytest.mark.parametrize("family", sorted(TINY))
def test_loaded_and_detected_families_are_members(family: str) -> None:
    loaded = tiny(family)
    assert loaded.family is Family(family)
    assert family_of(loaded.model) is Family(family)


def test_base_family_loads_the_plain_encoder() -> None:
    assert lrpt.load_model("tiny-bert", family=Family.BASE).family is Family.BASE
    with pytest.raises(ValueError, match="family must be one of causal, seq2seq, encoder, base"):
        lrpt.load_model("tiny-bert", family="decoder")
