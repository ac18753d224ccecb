"""Shared fixtures: tiny seeded models (built once per session) and their input encoder."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

import lrpt
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
