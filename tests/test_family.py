"""Model families: what a loaded model is detected as, how a family is given, how an artifact
records it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY, tiny, tiny_prompted

import lrpt
from lrpt.family import Family
from lrpt.model import family_of


@pytest.mark.parametrize("family", sorted(TINY))
def test_loaded_and_detected_families_are_members(family: str) -> None:
    loaded = tiny(family)
    assert loaded.family is Family(family)
    assert family_of(loaded.model) is Family(family)


@pytest.mark.parametrize("family", ["base", Family.BASE], ids=["name", "member"])
def test_base_family_loads_the_plain_encoder(family: str) -> None:
    """By name or as the member: the encoder without a sequence-classification head."""
    loaded = lrpt.load_model("tiny-bert", family=family)
    assert loaded.family is Family.BASE
    assert type(loaded.model).__name__ == "BertModel"


def test_unknown_family_names_every_family() -> None:
    with pytest.raises(ValueError, match="family must be one of causal, seq2seq, encoder, base"):
        lrpt.load_model("tiny-bert", family="decoder")


@pytest.mark.parametrize("family", sorted(TINY))
def test_artifact_records_the_detected_family(family: str, tmp_path: Path) -> None:
    pm = tiny_prompted("pt", family, num_tokens=2)
    path = lrpt.save_prompt(pm, tmp_path / "prompt", model_name=TINY[family])
    assert json.loads((path / "prompt.json").read_text())["model"]["family"] == family
