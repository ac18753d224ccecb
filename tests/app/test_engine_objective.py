"""The vLLM engine's offline path without vLLM: EngineObjective on a reference engine (the frozen
model itself, run on each row's input embeddings alone) scores labels and generates as the own
path does, for every method on the tiny causal model; the engine flags and settings."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import torch
from conftest import randomise, tiny_prompted

from lrpt.app.cli import main
from lrpt.app.data.examples import Example
from lrpt.app.data.objectives import make_objective
from lrpt.app.data.task_format import TaskSpec
from lrpt.app.vllm_engine.offline import EngineObjective, eos_ids
from lrpt.app.vllm_engine.scoring import MAX_TOKENS_PER_REQUEST, ScorePlan
from lrpt.app.vllm_engine.settings import VllmSettings, options_table
from lrpt.methods import METHODS

EXAMPLES = [
    Example("a truly good film", "pos"),
    Example("bad", "neg"),
    Example("an utterly bad and boring film, too long", "neg"),
]
# byte tokens: " good" and " great" share " g"; "meh" is a third label
WORDS = {"neg": "meh", "pos": "good", "mixed": "great"}

pytestmark = pytest.mark.usefixtures("one_thread")


class Reference:
    """An EmbedsEngine on the frozen model itself: each row alone, positions 0..T-1."""

    def __init__(self, pm) -> None:
        self.model = pm.model
        self.eos = eos_ids(pm.model)
        self.requests = 0

    def _next(self, e: torch.Tensor) -> torch.Tensor:
        self.requests += 1
        return self.model(inputs_embeds=e[None]).logits[0, -1].float().log_softmax(-1)

    @torch.no_grad()
    def generate(self, embeds: Sequence[torch.Tensor], max_tokens: int) -> list[list[int]]:
        table = self.model.get_input_embeddings().weight
        out = []
        for e in embeds:
            tokens: list[int] = []
            while len(tokens) < max_tokens and not (tokens and tokens[-1] in self.eos):
                tokens.append(int(self._next(e).argmax()))
                e = torch.cat([e, table[tokens[-1]][None]])
            out.append(tokens)
        return out

    @torch.no_grad()
    def logprobs(
        self, embeds: Sequence[torch.Tensor], tokens: Sequence[list[int]]
    ) -> list[Mapping[int, float]]:
        out = []
        for e, wanted in zip(embeds, tokens, strict=True):
            logp = self._next(e)
            out.append({t: float(logp[t]) for t in wanted})
        return out


def task(objective: str) -> TaskSpec:
    return TaskSpec("toy", tuple(WORDS), "accuracy", "Review: {text}\nSentiment:", WORDS, objective)


def prompted(key: str):
    pm = tiny_prompted(key).eval()
    randomise(pm.method, seed=1)
    return pm


@pytest.mark.parametrize("key", sorted(METHODS))
def test_label_scores_equal_the_own_path(key: str) -> None:
    pm = prompted(key)
    inner = make_objective(task("classify"), pm.tokenizer, pm.family, pm.model.config)
    engine = Reference(pm)
    objective = EngineObjective(inner, pm, engine)
    batch = objective.collate(EXAMPLES)
    with torch.no_grad():
        want = inner.scores(pm, batch)
    got = objective.scores(batch)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # prefixes per input: (), " ", " g", " m", " me", " go", " goo", " gr", " gre", " grea"
    assert engine.requests == 10 * len(EXAMPLES)
    assert objective.predict(pm, batch) == want.argmax(-1).tolist()


@pytest.mark.parametrize("key", sorted(METHODS))
def test_greedy_tokens_equal_the_own_path(key: str) -> None:
    pm = prompted(key)
    inner = make_objective(task("generate"), pm.tokenizer, pm.family, pm.model.config)
    objective = EngineObjective(inner, pm, Reference(pm))
    batch = objective.collate(EXAMPLES, golds=False)
    ids, mask = inner.inputs(batch, pm)
    got = objective.runner.generate(ids, mask, texts=batch.texts, max_new_tokens=12)
    want = pm.generate(ids, mask, texts=batch.texts, max_new_tokens=12, do_sample=False)
    assert got.shape == (3, 12)
    assert torch.equal(got, want[:, : got.shape[1]])
    assert objective.answers(pm, batch) == inner.answers(pm, batch)


def test_score_plan() -> None:
    """Shared beginnings share requests; a request asks for at most vLLM's 128 tokens."""
    plan = ScorePlan([[5, 7], [5, 8], [6]], rows=2)
    assert plan.prefixes == [(0, ()), (0, (5,)), (1, ()), (1, (5,))]
    assert plan.wanted == [[5, 6], [7, 8], [5, 6], [7, 8]]
    logprobs = [{5: -1.0, 6: -2.0}, {7: -0.5, 8: -0.25}] * 2
    assert plan.scores(logprobs).tolist() == [[-1.5, -1.25, -2.0]] * 2
    many = ScorePlan([[t] for t in range(300)], rows=1)
    assert [len(w) for w in many.wanted] == [MAX_TOKENS_PER_REQUEST] * 2 + [44]
    with pytest.raises(ValueError, match="got 1 answers for 4 requests"):
        plan.scores(logprobs[:1])


def test_settings() -> None:
    settings = VllmSettings(max_num_seqs=8)
    cpu = settings.engine_args(Path("/m"), torch.float32, cpu=True)
    assert cpu == {
        "model": "/m", "dtype": "float32", "tensor_parallel_size": 1, "enable_prompt_embeds": True,
        "enable_prefix_caching": True, "enforce_eager": False, "seed": 0, "max_num_seqs": 8,
        "kv_cache_memory_bytes": 1 << 30, "block_size": 32,
    }  # fmt: skip
    gpu = VllmSettings(kv_cache_gib=2.5).engine_args(Path("/m"), torch.bfloat16, cpu=False)
    assert (gpu["dtype"], gpu["kv_cache_memory_bytes"], "block_size" in gpu) == (
        "bfloat16", int(2.5 * (1 << 30)), False
    )  # fmt: skip
    with pytest.raises(ValueError, match="--vllm-tensor-parallel-size must be > 0, got 0"):
        VllmSettings(tensor_parallel_size=0)


def test_the_docs_table_is_generated_from_the_settings() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "serving.md").read_text()
    block = re.search(r"<!-- vllm-options -->\n(.*?)\n<!-- /vllm-options -->", docs, re.S)
    assert block is not None and block.group(1) == options_table()
    assert block.group(1).count("| `--vllm-") == len(dataclasses.fields(VllmSettings)) == 6


def test_engine_flags(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """--vllm-* flags need --engine vllm; without vLLM installed, the error names the extra
    (both before any model loads)."""
    args = ["predict", "--prompt", "nowhere", "hello"]
    assert main([*args, "--vllm-max-num-seqs", "4"]) == 2
    assert (
        "--vllm-max-num-seqs set(s) the vLLM engine: add --engine vllm" in capsys.readouterr().err
    )
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed
    assert main(["eval", "--prompt", "nowhere", "--engine", "vllm"]) == 2
    err = capsys.readouterr().err
    assert "--engine vllm needs vLLM" in err and "pip install 'lrpt[vllm]'" in err
