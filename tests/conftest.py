"""Shared fixtures: tiny seeded models (built once per session), their input encoder, and methods
built on them."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import torch

import lrpt
from lrpt.methods import InitContext
from lrpt.methods.base import PromptMethod
from lrpt.model import InputEncoder

TINY = {"causal": "tiny-llama", "seq2seq": "tiny-t5", "encoder": "tiny-bert"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip cleanly on a machine without a CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; torch.cuda.is_available() is False")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """One torch thread for the test (modules opt in with ``usefixtures``): tiny models gain
    nothing from threads and lose a lot when other jobs share the cores; distributed ranks run
    with ``OMP_NUM_THREADS=1``, so their one-process reference does too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def _load(key: str, family: str | None) -> lrpt.LoadedModel:
    return lrpt.load_model(key, family=family)


def tiny(family: str) -> lrpt.LoadedModel:
    """A fresh copy of the tiny model of ``family`` (causal, seq2seq, encoder)."""
    return copy.deepcopy(_load(TINY[family], family))


def tiny_encoder() -> InputEncoder:
    """The tiny BERT as a frozen input encoder (k = 64)."""
    base = copy.deepcopy(_load("tiny-bert", "base"))
    return InputEncoder(base.model, base.tokenizer)


def _encoder_for(key: str) -> InputEncoder | None:
    """The tiny input encoder for an instance-dependent method, ``None`` for a static one."""
    return None if lrpt.METHODS[key].static else tiny_encoder()


def tiny_method(key: str, seed: int = 0, **options: Any) -> PromptMethod:
    """Method ``key`` (config from ``options``) built for the tiny causal model, init seed
    ``seed``."""
    loaded = tiny("causal")
    return lrpt.build_method(
        key, loaded.model, loaded.tokenizer, encoder=_encoder_for(key), seed=seed, **options
    )


def init_context(seed: int = 0) -> InitContext:
    """What a method built for the tiny causal model with init seed ``seed`` initialises from."""
    loaded = tiny("causal")
    return InitContext(
        embedding=loaded.model.get_input_embeddings(),
        generator=torch.Generator().manual_seed(seed),
        tokenizer=loaded.tokenizer,
    )


def tiny_prompted(
    key: str, family: str = "causal", seed: int = 0, **options: Any
) -> lrpt.PromptedModel:
    """Method ``key`` (config from ``options``) on a fresh tiny model of ``family``, init seed
    ``seed``."""
    loaded = tiny(family)
    return lrpt.prompt_model(
        key, loaded.model, loaded.tokenizer, encoder=_encoder_for(key), seed=seed, **options
    )


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.Generator:
    """Every parameter of ``module`` drawn anew from N(0, 1) (off any special init, so a formula
    by hand sees every term); returns the seeded generator, for more draws."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
    return generator


@pytest.fixture
def causal() -> lrpt.LoadedModel:
    return tiny("causal")


@pytest.fixture
def seq2seq() -> lrpt.LoadedModel:
    return tiny("seq2seq")


@pytest.fixture
def encoder_model() -> lrpt.LoadedModel:
    return tiny("encoder")


@pytest.fixture
def input_encoder() -> InputEncoder:
    return tiny_encoder()
