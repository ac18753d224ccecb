"""The serving engine in process, stepped by hand: requests that arrive mid-decode join the
running batch and every request gets what its prompt gives it alone; a store of many prompts
loads with prefixes computed on first use, under the LRU's cap."""

from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny
from serving import PROMPTS, save
from test_serve import TEXTS, _greedy_alone, _scores_alone

from lrpt.app.serve.engine import Engine
from lrpt.app.serve.errors import Overloaded
from lrpt.app.serve.jobs import ClassifyJob, Delta, Done, Event, GenerateJob, Labels, Sampling
from lrpt.app.serve.metrics import ServeMetrics
from lrpt.app.serve.store import PromptStore


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engine") / "store"
    for i, name in enumerate(PROMPTS):
        save(root, name, seed=i + 1)
    return root


def _engine(root: Path, **kwargs: Any) -> Engine:
    base = tiny("causal")
    store = PromptStore(root, base.model.eval(), base.tokenizer, "tiny-llama")
    store.load_all()
    return Engine(store, ServeMetrics(), **kwargs)


class Sink:
    """Collects one request's events."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def text(self) -> str:
        assert isinstance(self.events[-1], Done), self.events
        return "".join(e.text for e in self.events if isinstance(e, Delta))


def _classify(engine: Engine, name: str, sink: Sink, texts: list[str], timeout: float) -> None:
    served, objective = engine.store.classifier(name)
    engine.submit(ClassifyJob(served=served, objective=objective, deliver=sink,
                              deadline=time.monotonic() + timeout, texts=texts))  # fmt: skip


def _generate(engine: Engine, name: str, prompt: str, sink: Sink, max_tokens: int) -> None:
    ids = list(engine.tokenizer(prompt)["input_ids"])
    greedy = Sampling(temperature=0.0)
    engine.submit(GenerateJob(served=engine.store.resolve(name), deliver=sink,
                              deadline=time.monotonic() + 60, ids=ids, text=prompt,
                              max_tokens=max_tokens, sampling=greedy))  # fmt: skip


def test_generations_join_mid_decode_and_equal_each_prompt_alone(store_dir: Path) -> None:
    engine = _engine(store_dir)
    first = Sink()
    _generate(engine, "sent-ulpt", "the film", first, 10)
    engine.step()
    engine.step()
    assert engine.decoding == 1
    late = {name: Sink() for name in ["sent-pt", "topic-dpt", "sent-idpg", "tiny-llama"]}
    for name, sink in late.items():
        _generate(engine, name, "a long day", sink, 10)
    engine.step()
    assert engine.decoding == 5  # joined at once: the first request has not finished
    while engine.decoding or engine.queued:
        engine.step()
    assert first.text == _greedy_alone(store_dir, "sent-ulpt", "the film", 10)
    for name, sink in late.items():
        if name != "tiny-llama":
            assert sink.text == _greedy_alone(store_dir, name, "a long day", 10), name
    done = late["tiny-llama"].events[-1]
    assert isinstance(done, Done)
    assert done.prompt_tokens == len(engine.tokenizer("a long day")["input_ids"])


def test_one_mixed_classification_batch_equals_each_prompt_alone(store_dir: Path) -> None:
    engine = _engine(store_dir)
    sinks = {name: Sink() for name in PROMPTS}
    for name, sink in sinks.items():
        _classify(engine, name, sink, TEXTS, 60)
    engine.step()  # all of them in one iteration
    for name, sink in sinks.items():
        (labels,) = sink.events
        assert isinstance(labels, Labels)
        for text, result in zip(TEXTS, labels.results, strict=True):
            expected = _scores_alone(store_dir, name, text)
            assert list(result["scores"].values()) == pytest.approx(expected, abs=1e-4)
    metrics = engine.metrics.text().decode()
    # one mixed forward over the three shared-prefix prompts' 12 texts (idpg runs by itself)
    assert 'lrpt_batch_size_bucket{kind="classify",le="16.0"} 2.0' in metrics
    assert 'lrpt_batch_size_bucket{kind="classify",le="8.0"} 1.0' in metrics


def _many(root: Path, source: Path, count: int) -> None:
    root.mkdir(parents=True)
    for i in range(count):
        shutil.copytree(source, root / f"p{i:05d}")


@pytest.mark.parametrize("count", [1000, pytest.param(10_000, marks=pytest.mark.slow)])
def test_many_prompts_fit_with_prefixes_on_first_use(
    store_dir: Path, tmp_path: Path, count: int
) -> None:
    _many(tmp_path / "many", store_dir / "sent-ulpt", count)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    engine = _engine(tmp_path / "many", prefix_cache_bytes=64 << 10)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(engine.store.prompts) == count and len(engine.cache) == 0  # none computed yet
    assert grown_mb < count * 0.1  # under 100 KB a prompt (measured ≈ 18 KB)
    sinks = [Sink() for _ in range(40)]
    for i, sink in enumerate(sinks):
        name = f"p{(i * 37) % count:05d}"
        _classify(engine, name, sink, [TEXTS[0]], 60)
        engine.step()
    assert engine.cache.misses == 40 and engine.cache.evictions > 0
    assert engine.cache.bytes <= 64 << 10
    scores = {tuple(s.events[0].results[0]["scores"].values()) for s in sinks}  # type: ignore[union-attr]
    assert len(scores) == 1  # copies of one prompt: the same answer, evicted or not
    expected = _scores_alone(store_dir, "sent-ulpt", TEXTS[0])
    assert list(next(iter(scores))) == pytest.approx(expected, abs=1e-4)
    assert torch.get_num_threads() >= 1


def test_a_request_that_would_time_out_waiting_is_refused_at_once(store_dir: Path) -> None:
    engine = _engine(store_dir, max_batch=2, max_queue=100)
    for _ in range(3):
        _classify(engine, "sent-ulpt", Sink(), ["x"], 60)
    engine._completed.extend([time.monotonic()] * 6)  # 6 finished in the last 30 s: 0.2 per s
    with pytest.raises(Overloaded, match="3 requests are waiting, about 15 s of work"):
        _classify(engine, "sent-ulpt", Sink(), ["x"], 10)
    _classify(engine, "sent-ulpt", Sink(), ["x"], 20)  # 20 s: it fits
    assert engine.queued == 4


def test_a_replaced_prompt_serves_its_queued_requests_then_leaves_the_bank(
    store_dir: Path,
) -> None:
    engine = _engine(store_dir)
    queued = Sink()
    _classify(engine, "sent-ulpt", queued, [TEXTS[0]], 60)
    old = engine.store.prompts["sent-ulpt"]
    engine.install(engine.store.load(store_dir / "topic-dpt", "sent-ulpt"))  # a new version
    engine.step()
    expected = {"old": _scores_alone(store_dir, "sent-ulpt", TEXTS[0]),
                "new": _scores_alone(store_dir, "topic-dpt", TEXTS[0])}  # fmt: skip
    (labels,) = queued.events
    assert isinstance(labels, Labels)
    assert list(labels.results[0]["scores"].values()) == pytest.approx(expected["old"], abs=1e-4)
    assert old.key not in engine.bank.prompts  # retired: no queued request needs it
    later = Sink()
    _classify(engine, "sent-ulpt", later, [TEXTS[0]], 60)
    engine.step()
    scores = later.events[0].results[0]["scores"]  # type: ignore[union-attr]
    assert list(scores.values()) == pytest.approx(expected["new"], abs=1e-4)
