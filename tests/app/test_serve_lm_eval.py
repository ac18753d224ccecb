"""EleutherAI's lm-evaluation-harness (``lm-eval``) against a real ``lrpt serve`` on loopback:
its ``local-completions`` model scores docs/serving.md's multiple-choice task on local files
(echo + logprobs on ``/v1/completions``, token ids from a local copy of the base model's
tokenizer) and must reproduce ``lrpt eval``'s accuracy on the same examples exactly. Nothing is
downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import tiny
from serving import MR, Server, save
from test_serve_openai import PAIR

from lrpt.app.cli import main

ROOT = Path(__file__).resolve().parents[2]
KEY = "user-secret"
NAME = "pair-ulpt"  # PAIR's random prompt predicts each label for some of the reviews below
ADJECTIVES = ["calm", "sweet", "slow", "loud", "fine", "sad", "kind", "cold", "new", "rich"]
NOUNS = ["story", "cast", "plot", "score"]


def _reviews() -> list[dict[str, str]]:
    """40 reviews, every fifth one negative."""
    rows = [f"a {adjective} {noun}, on the whole" for adjective in ADJECTIVES for noun in NOUNS]
    return [{"text": text, "label": MR.labels[i % 5 != 0]} for i, text in enumerate(rows)]


def _task_yaml(data: Path) -> str:
    """docs/serving.md's task (MR's template, the label's index as the target, ``acc``) on the
    JSON lines file ``data``, with PAIR's answer words as the choices, in label order."""
    doc = (ROOT / "docs" / "serving.md").read_text()
    section = doc.split("## Evaluating a served prompt with lm-evaluation-harness", 1)[1]
    task = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert json.dumps(MR.template.replace("{text}", "{{text}}")) in task
    choices = json.dumps([MR.verbalizer[label] for label in MR.labels])
    ours = json.dumps([PAIR.verbalizer[label] for label in PAIR.labels])
    assert PAIR.template == MR.template and choices in task and "/path/to/mr_test.jsonl" in task
    return task.replace(choices, ours).replace("/path/to/mr_test.jsonl", str(data))


def _lm_eval(url: str, tasks: Path, tokenizer: Path, out: Path) -> tuple[float, list[list[float]]]:
    """``lm-eval run`` as a user types it, offline; → the task's accuracy and each example's
    choice log-likelihoods, in document order."""
    model_args = (f"model={NAME},base_url={url}/v1/completions,tokenizer_backend=huggingface,"
                  f"tokenizer={tokenizer},add_bos_token=True")  # fmt: skip
    command = [sys.executable, "-m", "lm_eval", "run", "--model", "local-completions",
               "--model_args", model_args, "--tasks", "mr_lrpt", "--include_path",
               str(tasks), "--batch_size", "16", "--output_path", str(out),
               "--log_samples"]  # fmt: skip
    env = os.environ | {"OPENAI_API_KEY": KEY, "HF_HOME": str(out / "hf"), "HF_HUB_OFFLINE": "1",
                        "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    [results] = out.glob("**/results_*.json")
    [samples] = out.glob("**/samples_mr_lrpt_*.jsonl")
    rows = sorted((json.loads(line) for line in samples.read_text().splitlines()),
                  key=lambda row: row["doc_id"])  # fmt: skip
    scores = [[float(ll) for ll, _greedy in row["filtered_resps"]] for row in rows]
    return json.loads(results.read_text())["results"]["mr_lrpt"]["acc,none"], scores


def _classify(url: str, texts: list[str]) -> list[list[float]]:
    """Each text's label scores from ``/v1/classify``, in label order."""
    scores = []
    for first in range(0, len(texts), 20):
        body = {"model": NAME, "input": texts[first : first + 20]}
        auth = {"Authorization": f"Bearer {KEY}"}
        response = httpx.post(url + "/v1/classify", json=body, headers=auth, timeout=60)
        assert response.status_code == 200, response.text
        scores += [[row["scores"][label] for label in MR.labels] for row in response.json()["data"]]
    return scores


def test_lm_eval_reproduces_lrpt_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """lm-eval's accuracy is lrpt eval's; each choice's log-likelihood (the echoed answer tokens
    of a request for one token more) is the served label score within 1e-4, far under the
    closest call (8e-4); lm-eval predicts both labels, so the comparison can fail."""
    store = tmp_path / "store"
    save(store, "sent-ulpt", seed=1, task=PAIR, to=NAME)
    examples = _reviews()
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(e) + "\n" for e in examples))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "mr_lrpt.yaml").write_text(_task_yaml(data))
    tokenizer = tmp_path / "tokenizer"
    tiny("causal").tokenizer.save_pretrained(tokenizer)
    server = Server(store, "--api-key", KEY)
    try:
        accuracy, scores = _lm_eval(server.url, tasks, tokenizer, tmp_path / "out")
        served = _classify(server.url, [e["text"] for e in examples])
    finally:
        assert server.stop()
    assert len(scores) == 40
    for got, want in zip(scores, served, strict=True):
        assert got == pytest.approx(want, abs=1e-4)
    predicted = [row.index(max(row)) for row in scores]
    assert sorted(set(predicted)) == [0, 1]
    assert main(["eval", "--prompt", str(store / NAME), "--data", str(data), "--validation-data",
                 str(data), "--test-data", str(data), "--json"]) == 0  # fmt: skip
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["examples"] == 40
    assert accuracy == evaluated["metrics"]["accuracy"] == 27 / 40
