"""The shared prefix across transformers releases: decided by what the model does, never silent."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
import transformers
from conftest import tiny
from packaging.version import Version
from transformers import LlamaForCausalLM

import lrpt
from lrpt import model as model_module
from lrpt.cache_api import PrefixSupport, cache_kwargs, prefix_support, window_reason

TEXTS = ["a quiet film", "loud and very long, but fun"]


class IgnoresCache(LlamaForCausalLM):
    """A model that swallows any cache keyword in ``**kwargs`` and ignores it (as some custom
    models do): it accepts the call but never continues a cache it is given."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("cache", None)
        kwargs.pop("past_key_values", None)
        return super().forward(*args, **kwargs)


def _ignoring() -> lrpt.LoadedModel:
    loaded = tiny("causal")
    model = IgnoresCache(loaded.model.config)
    model.load_state_dict(loaded.model.state_dict())
    return lrpt.LoadedModel(model.eval(), loaded.tokenizer, "causal", "ignores-cache")


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch) -> None:
    monkeypatch.setattr(model_module, "_warned", set())


def test_keyword_order_follows_the_release() -> None:
    assert cache_kwargs("5.0.0") == ("past_key_values", "cache")
    assert cache_kwargs("5.23.0") == ("past_key_values", "cache")
    assert cache_kwargs("5.24.0") == ("cache", "past_key_values")
    assert cache_kwargs("5.24.0.dev0") == ("cache", "past_key_values")


def expected_keyword() -> str:
    """The cache keyword of the installed release's models."""
    renamed = Version(transformers.__version__).release >= (5, 24)
    return "cache" if renamed else "past_key_values"


def test_installed_release_takes_its_own_keyword() -> None:
    support = prefix_support(tiny("causal").model)
    assert support == PrefixSupport(expected_keyword())
    assert support.ok and support.reason == ""


def test_a_model_that_ignores_the_cache_is_detected(caplog) -> None:
    loaded = _ignoring()
    support = prefix_support(loaded.model)
    assert not support.ok
    assert support.reason.startswith("IgnoresCache.forward takes no precomputed cache (tried ")
    assert transformers.__version__ in support.reason
    pm = lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=4)
    with caplog.at_level(logging.WARNING, logger="lrpt.model"):
        assert not pm.shares_prefix()
        assert not pm.shares_prefix()  # said once
    (record,) = caplog.records
    assert record.getMessage() == (
        "lrpt: the prompt runs with every row, not as a shared prefix: " + support.reason
    )
    assert pm.prefix_path() == f"every row (no shared prefix: {support.reason})"
    # and it still runs, on the naive path, with the plain model's logits
    reference = lrpt.prompt_model("pt", tiny("causal").model, loaded.tokenizer, num_tokens=4)
    reference.share_prefix = False
    batch = loaded.tokenizer(TEXTS, return_tensors="pt", padding=True)
    torch.testing.assert_close(pm(**batch).logits, reference(**batch).logits, rtol=0, atol=0)


def test_a_sliding_window_is_checked_per_batch() -> None:
    """A window that covers a batch's rows with their prompt is full attention there: the
    model takes a shared prefix, and only longer batches run with the prompt in every row."""
    loaded = tiny("causal")
    config = loaded.model.config
    config.sliding_window = 16
    assert prefix_support(loaded.model) == PrefixSupport(expected_keyword())
    longer = (
        "in batches where a row with its prompt is longer than the model's sliding window "
        "(16 positions)"
    )
    assert window_reason(config, 16) is None
    assert window_reason(config, 17) == window_reason(config) == longer
    pm = lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=4, path="shared")
    assert pm.unshared_reason() == longer and not pm.shares_prefix()
    assert pm.prefix_path() == (
        "shared prefix: [BOS] + prompt runs once per batch (training) or once per task "
        f"(inference); every row {longer}"
    )
    config.use_sliding_window = False  # Qwen2-style switch: global attention
    assert window_reason(config, 10**6) is None and pm.shares_prefix()


def test_every_reason_is_said_once(caplog, input_encoder) -> None:
    causal, t5 = tiny("causal"), tiny("seq2seq")
    lopa = lrpt.prompt_model("lopa", causal.model, causal.tokenizer, encoder=input_encoder)
    pt_t5 = lrpt.prompt_model("pt", t5.model, t5.tokenizer, num_tokens=4)
    off = lrpt.prompt_model("pt", causal.model, causal.tokenizer, num_tokens=4, share_prefix=False)
    with caplog.at_level(logging.WARNING, logger="lrpt.model"):
        for pm in (lopa, lopa, pt_t5, pt_t5, off):
            assert not pm.shares_prefix()
    assert [r.getMessage().split(": ", 2)[-1] for r in caplog.records] == [
        "method 'lopa' is instance-dependent: each row has its own prompt",
        "a seq2seq model: the prompt is part of the encoder's input",
    ]  # share_prefix=False is the caller's choice: not warned
    assert off.unshared_reason() == "turned off (share_prefix=False)"


def test_bank_refuses_a_model_without_prefix_support() -> None:
    from lrpt.bank import PromptBank

    loaded = _ignoring()
    pm = lrpt.prompt_model("pt", loaded.model, loaded.tokenizer, num_tokens=4)
    with pytest.raises(ValueError, match=r"task 'a': mixed-task batches need a shared prefix: "):
        PromptBank({"a": pm})
