"""Bad input to the library: each error names the offending value and what was expected."""

from __future__ import annotations

import pytest
from conftest import tiny

import lrpt
from lrpt.methods import ModelDims


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'nope'; known methods: pt"):
        lrpt.make_config("nope")


@pytest.mark.parametrize("key", sorted(lrpt.METHODS))
def test_num_tokens_below_one(key: str) -> None:
    with pytest.raises(ValueError, match=r"num_tokens must be an integer ≥ 1, got 0"):
        lrpt.make_config(key, num_tokens=0)


@pytest.mark.parametrize(
    "key",
    sorted(k for k, c in lrpt.METHODS.items() if "rank" in c.config_class.__dataclass_fields__),
)
def test_rank_below_one(key: str) -> None:
    with pytest.raises(ValueError, match=r"rank must be an integer ≥ 1, got 0"):
        lrpt.make_config(key, rank=0)


def test_unknown_option_names_it_and_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"does not take option\(s\) colour; it takes: num_tokens"):
        lrpt.make_config("pt", colour=3)


def test_embedding_size_mismatch() -> None:
    loaded = tiny("causal")
    method = lrpt.METHODS["pt"](lrpt.make_config("pt", num_tokens=3), ModelDims(embed_dim=32))
    with pytest.raises(
        ValueError, match=r"embedding size 32, but the model's embeddings have size 64"
    ):
        lrpt.PromptedModel(loaded.model, loaded.tokenizer, method)


def test_unknown_model_key() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'tiny-gpt9'"):
        lrpt.load_model("tiny-gpt9")


def test_missing_model_path(tmp_path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError) as err:
        lrpt.load_model(str(missing))
    message = str(err.value)
    assert "tried the built-in keys (tiny-llama, " in message
    assert f"a local directory '{missing}', which does not exist" in message


def test_directory_without_config(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"not a Hugging Face model directory: no config\.json"):
        lrpt.load_model(str(tmp_path))


def test_wrong_family_for_tiny_model() -> None:
    with pytest.raises(ValueError, match="'tiny-t5' is a seq2seq model, not 'causal'"):
        lrpt.load_model("tiny-t5", family="causal")


def test_local_directory_round_trip(tmp_path) -> None:
    loaded = tiny("causal")
    loaded.model.save_pretrained(tmp_path)
    loaded.tokenizer.save_pretrained(tmp_path)
    again = lrpt.load_model(str(tmp_path))
    assert again.family == "causal"
    for (name, a), b in zip(loaded.model.state_dict().items(), again.model.state_dict().values(),
                            strict=True):  # fmt: skip
        assert a.equal(b), name
