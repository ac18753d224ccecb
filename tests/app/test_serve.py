"""``lrpt serve`` against a real server process on loopback: the API, errors, limits, uploads,
auth, overload, kill -9 and restart, and outputs equal to each prompt served alone."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from conftest import tiny, tiny_encoder
from serving import MR, PROMPTS, Server, save, save_foreign, tar_of

import lrpt
from lrpt.app.data.examples import Example
from lrpt.app.data.objectives import ClassifyObjective, make_objective

TEXTS = ["a quiet, lovely film", "dull and far too long", "I laughed", "stocks fell sharply"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve") / "store"
    for i, name in enumerate(PROMPTS):
        save(root, name, seed=i + 1)
    save_foreign(root)
    return root


@pytest.fixture(scope="module")
def server(store: Path) -> Server:
    srv = Server(store)
    yield srv
    assert srv.stop()


def _alone(store: Path, name: str) -> lrpt.PromptedModel:
    """The prompt loaded in this process on a fresh tiny-llama, as ``lrpt predict`` runs it."""
    base = tiny("causal")
    encoder = None if lrpt.METHODS[PROMPTS[name][0]].static else tiny_encoder()
    return lrpt.load_prompt(store / name, base.model, base.tokenizer, encoder=encoder).eval()


def _scores_alone(store: Path, name: str, text: str) -> list[float]:
    pm = _alone(store, name)
    objective = make_objective(PROMPTS[name][2], pm.tokenizer, pm.family, pm.model.config)
    assert isinstance(objective, ClassifyObjective)
    with torch.inference_mode():
        batch = objective.collate([Example(text, "")], golds=False)
        return objective.scores(pm, batch)[0].tolist()


def _greedy_alone(store: Path, name: str, prompt: str, max_tokens: int) -> str:
    pm = _alone(store, name)
    tok = pm.tokenizer
    ids = tok([prompt], return_tensors="pt")
    with torch.inference_mode():
        new = pm.generate(ids["input_ids"], ids["attention_mask"], texts=[prompt],
                          max_new_tokens=max_tokens, do_sample=False)[0].tolist()  # fmt: skip
    eos = pm.model.generation_config.eos_token_id
    new = new[: new.index(eos)] if eos in new else new
    return tok.decode(new, skip_special_tokens=True)


def test_health_models_and_refused_prompt(server: Server) -> None:
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["prompts"] == len(PROMPTS)
    assert "was trained on model 'tiny-llama', not this one" in health["refused"]["foreign"]
    assert "refusing prompt 'foreign'" in server.output()
    ids = [m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]]
    assert ids == ["tiny-llama", *sorted(PROMPTS)]


def test_mixed_concurrent_classification_equals_each_prompt_alone(
    server: Server, store: Path
) -> None:
    jobs = [(name, text) for name in PROMPTS for text in TEXTS[:2]]

    def ask(job: tuple[str, str]) -> dict:
        response = httpx.post(server.url + "/v1/classify", json={"model": job[0], "input": job[1]})
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(ask, jobs))
    for (name, text), answer in zip(jobs, answers, strict=True):
        expected = _scores_alone(store, name, text)
        got = answer["data"][0]
        assert list(got["scores"].values()) == pytest.approx(expected, abs=1e-4), (name, text)
        assert got["label"] == MR.labels[int(torch.tensor(expected).argmax())]
        assert sum(got["probabilities"].values()) == pytest.approx(1.0)
        assert answer["usage"]["prompt_tokens"] > 0


def test_mixed_concurrent_greedy_generation_equals_each_prompt_alone(
    server: Server, store: Path
) -> None:
    jobs = [(name, f"{text} and so") for name in [*PROMPTS, "tiny-llama"] for text in TEXTS[:2]]

    def ask(job: tuple[str, str]) -> dict:
        body = {"model": job[0], "prompt": job[1], "max_tokens": 12, "temperature": 0}
        response = httpx.post(server.url + "/v1/completions", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(ask, jobs))
    for (name, prompt), answer in zip(jobs, answers, strict=True):
        choice = answer["choices"][0]
        if name == "tiny-llama":
            continue  # the bare model: checked against itself below
        assert choice["text"] == _greedy_alone(store, name, prompt, 12), (name, prompt)
        assert answer["usage"]["completion_tokens"] <= 12
        assert answer["object"] == "text_completion" and answer["model"] == name
    base = [a["choices"][0]["text"] for (n, _), a in zip(jobs, answers, strict=True)
            if n == "tiny-llama"]  # fmt: skip
    assert base[0] != base[1] or TEXTS[0] == TEXTS[1]


def test_sampling_is_seeded_and_streaming_matches(server: Server) -> None:
    body = {"model": "sent-ulpt", "prompt": "once upon", "max_tokens": 10, "temperature": 0.9,
            "top_p": 0.9, "seed": 7}  # fmt: skip
    first = httpx.post(server.url + "/v1/completions", json=body).json()["choices"][0]["text"]
    again = httpx.post(server.url + "/v1/completions", json=body).json()["choices"][0]["text"]
    other = httpx.post(server.url + "/v1/completions", json=body | {"seed": 8}).json()
    assert first == again and first != other["choices"][0]["text"]
    stream = body | {"stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", server.url + "/v1/completions", json=stream) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == first
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["usage"]["completion_tokens"] >= 1


def test_stop_strings_cut_the_text(server: Server) -> None:
    body = {"model": "topic-dpt", "prompt": "x y z", "max_tokens": 20, "temperature": 0}
    full = httpx.post(server.url + "/v1/completions", json=body).json()["choices"][0]
    assert len(full["text"]) >= 4
    stop = full["text"][2:4]
    cut = httpx.post(server.url + "/v1/completions", json=body | {"stop": stop}).json()
    assert cut["choices"][0]["text"] == full["text"][: full["text"].index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        (b'{"model": "sent-pt", "prompt": "x', 400, None, "invalid_json"),
        ({"model": "nope", "prompt": "x"}, 404, "model", "model_not_found"),
        ({"model": "sent-pt", "prompt": "x", "max_tokens": "4"}, 400, "max_tokens", "invalid_type"),
        ({"model": "sent-pt", "prompt": "x", "max_tokens": 100000}, 400, "max_tokens", None),
        ({"model": "sent-pt", "prompt": "x", "n": 0}, 400, "n", None),
        ({"model": "sent-pt", "prompt": "   "}, 400, "prompt", "empty_input"),
        ({"model": "sent-pt", "prompt": "x " * 3000}, 400, "prompt", "input_too_long"),
        ({"model": "sent-pt"}, 400, "prompt", "missing_field"),
        ({"model": "sent-pt", "prompt": "x", "temperature": 5}, 400, "temperature", None),
        ({"model": "sent-pt", "prompt": "x", "best_of": 0}, 400, "best_of", None),
        ({"model": "sent-pt", "prompt": "x", "colour": 1}, 400, "colour", "unknown_field"),
        ({"model": "sent-pt", "prompt": []}, 400, "prompt", None),
        ({"model": "sent-pt", "prompt": "a" * 2_000_000}, 413, "body", "body_too_large"),
    ],
)
def test_bad_completion_requests_name_the_field(
    server: Server, body: object, status: int, param: str | None, code: str | None
) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(server.url + "/v1/completions", content=data,
                          headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code
    if param is not None and status == 400:
        assert param in error["message"]


def test_bad_classify_requests(server: Server) -> None:
    url = server.url + "/v1/classify"
    base = httpx.post(url, json={"model": "tiny-llama", "input": "x"})
    assert base.status_code == 400 and base.json()["error"]["code"] == "not_a_classifier"
    many = httpx.post(url, json={"model": "sent-pt", "input": ["x"] * 33})
    assert many.status_code == 400 and many.json()["error"]["param"] == "input"
    typed = httpx.post(url, json={"model": "sent-pt", "input": 3})
    assert typed.status_code == 400 and typed.json()["error"]["param"] == "input"
    missing = httpx.post(server.url + "/v1/nothing", json={})
    assert missing.status_code == 404 and "error" in missing.json()


def test_upload_replace_inspect_delete(server: Server, tmp_path: Path) -> None:
    url = server.url + "/v1/prompts/new.one"  # a dot: the engine's bank takes any valid name
    first = save(tmp_path, "sent-ulpt", seed=11)
    created = httpx.put(url, content=tar_of(first))
    assert created.status_code == 201, created.text
    assert created.json()["method"] == "ulpt" and created.json()["classify"]
    ask = {"model": "new.one", "input": TEXTS[0]}
    scores = httpx.post(server.url + "/v1/classify", json=ask).json()["data"][0]["scores"]
    second = save(tmp_path / "b", "sent-ulpt", seed=12)
    assert httpx.put(url, content=tar_of(second)).status_code == 200  # replaced
    again = httpx.post(server.url + "/v1/classify", json=ask).json()["data"][0]["scores"]
    assert again != scores  # the new prompt serves at once
    assert httpx.get(url).json()["parameters"] > 0
    assert httpx.delete(url).json()["deleted"] is True
    assert httpx.get(url).status_code == 404
    assert httpx.post(server.url + "/v1/classify", json=ask).status_code == 404


def test_bad_uploads_leave_nothing(server: Server, store: Path, tmp_path: Path) -> None:
    good = tar_of(save(tmp_path, "sent-pt", seed=3))
    bad_name = httpx.put(server.url + "/v1/prompts/.hidden", content=good)
    assert bad_name.status_code == 400 and bad_name.json()["error"]["param"] == "name"
    traversal = httpx.put(server.url + "/v1/prompts/..%2Fescape", content=good)
    assert traversal.status_code in (400, 404)
    assert httpx.put(server.url + "/v1/prompts/junk", content=b"not a tar").status_code == 400
    artifact = save(tmp_path / "c", "sent-pt", seed=3)
    meta = json.loads((artifact / "prompt.json").read_text())
    meta["model"]["embedding_sha256"] = "0" * 64  # another base model
    (artifact / "prompt.json").write_text(json.dumps(meta))
    refused = httpx.put(server.url + "/v1/prompts/other-model", content=tar_of(artifact))
    assert refused.status_code == 400 and "embedding_sha256" in refused.json()["error"]["message"]
    assert not (store / "other-model").exists() and not (store / "junk").exists()
    assert not [p for p in store.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    assert httpx.get(server.url + "/v1/prompts/other-model").status_code == 404


def test_metrics(server: Server) -> None:
    httpx.post(server.url + "/v1/classify", json={"model": "sent-ulpt", "input": "x"})
    text = httpx.get(server.url + "/metrics").text
    for name in ["lrpt_requests_total", "lrpt_request_latency_seconds_bucket", "lrpt_queue_depth",
                 "lrpt_batch_size_bucket", "lrpt_prefix_cache_hits_total",
                 "lrpt_prefix_cache_bytes", "lrpt_prompts"]:  # fmt: skip
        assert f"\n{name}" in text, name
    hits = [line for line in text.splitlines() if line.startswith("lrpt_prefix_cache_hits_total")]
    assert float(hits[0].split()[-1]) > 0


def test_auth_and_overload(store: Path) -> None:
    srv = Server(store, "--api-key", "user-key", "--admin-key", "admin-key", "--max-queue", "2",
                 "--max-batch", "1")  # fmt: skip
    try:
        url = srv.url + "/v1/completions"
        body = {"model": "sent-pt", "prompt": "hello", "max_tokens": 64, "temperature": 0}
        assert httpx.post(url, json=body).status_code == 401
        wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        user = {"Authorization": "Bearer user-key"}
        assert httpx.post(url, json=body, headers=user).status_code == 200
        assert httpx.get(srv.url + "/health").status_code == 200  # no key needed
        upload = srv.url + "/v1/prompts/x"
        assert httpx.put(upload, content=b"x", headers=user).status_code == 401
        admin = {"Authorization": "Bearer admin-key"}
        assert httpx.put(upload, content=b"x", headers=admin).status_code == 400  # not a tar

        def ask(_: int) -> httpx.Response:
            return httpx.post(url, json=body, headers=user, timeout=120)

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(ask, range(16)))
        codes = sorted(r.status_code for r in responses)
        assert set(codes) == {200, 429}, codes
        refused = [r for r in responses if r.status_code == 429]
        assert all(r.headers["retry-after"] == "1" for r in refused)
        assert refused[0].json()["error"]["code"] == "queue_full"
    finally:
        assert srv.stop()


def test_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lrpt", "serve", "--model", "tiny-llama", "--prompts",
         str(tmp_path), "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--host 0.0.0.0 is not a loopback address: give --api-key" in done.stderr
    assert "Traceback" not in done.stderr


def test_kill_9_then_restart_keeps_every_prompt(tmp_path: Path) -> None:
    root = tmp_path / "store"
    save(root, "sent-ulpt", seed=1)
    srv = Server(root)
    try:
        put = httpx.put(srv.url + "/v1/prompts/uploaded", content=tar_of(save(tmp_path, "sent-pt")))
        assert put.status_code == 201
        ask = {"model": "uploaded", "input": TEXTS[1]}
        before = httpx.post(srv.url + "/v1/classify", json=ask).json()["data"]
    finally:
        srv.kill()
    # a crash mid-upload leaves a hidden temporary directory (half written): never a prompt
    (root / ".half.0123.tmp").mkdir()
    (root / ".half.0123.tmp" / "prompt.json").write_text("{")
    srv = Server(root)
    try:
        names = [m["id"] for m in httpx.get(srv.url + "/v1/models").json()["data"]]
        assert names == ["tiny-llama", "sent-ulpt", "uploaded"]
        assert httpx.post(srv.url + "/v1/classify", json=ask).json()["data"] == before
        assert not (root / ".half.0123.tmp").exists()
        # SIGTERM while a generation runs: it finishes before the server exits
        body = {"model": "uploaded", "prompt": "go", "max_tokens": 200, "temperature": 0}
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(httpx.post, srv.url + "/v1/completions", json=body, timeout=60)
            while httpx.get(srv.url + "/health").json()["decoding"] == 0 and not running.done():
                time.sleep(0.01)
            srv.proc.terminate()
            answer = running.result()
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] >= 1
    finally:
        assert srv.stop()


def test_the_openai_client_works_against_it(server: Server, store: Path) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    assert "sent-ulpt" in [m.id for m in client.models.list()]
    done = client.completions.create(model="sent-ulpt", prompt="the film", max_tokens=6,
                                     temperature=0)  # fmt: skip
    assert done.choices[0].text == _greedy_alone(store, "sent-ulpt", "the film", 6)
    assert done.usage is not None and done.usage.completion_tokens <= 6
    parts = client.completions.create(model="sent-ulpt", prompt="the film", max_tokens=6,
                                      temperature=0, stream=True)  # fmt: skip
    assert "".join(c.choices[0].text for c in parts if c.choices) == done.choices[0].text
    from openai import BadRequestError

    with pytest.raises(BadRequestError, match="n: Input should be greater than or equal to 1"):
        client.completions.create(model="sent-ulpt", prompt="x", n=0)


def test_two_replicas_on_one_store(server: Server, store: Path, tmp_path: Path) -> None:
    """A prompt uploaded through one replica is served by another on the same store."""
    other = Server(store)
    try:
        put = httpx.put(
            server.url + "/v1/prompts/shared", content=tar_of(save(tmp_path, "sent-pt"))
        )
        assert put.status_code == 201
        ask = {"model": "shared", "input": TEXTS[0]}
        here = httpx.post(server.url + "/v1/classify", json=ask).json()["data"]
        there = httpx.post(other.url + "/v1/classify", json=ask)
        assert there.status_code == 200, there.text
        assert there.json()["data"][0]["scores"] == pytest.approx(here[0]["scores"], abs=1e-5)
        assert httpx.delete(server.url + "/v1/prompts/shared").status_code == 200
    finally:
        assert other.stop()


def test_a_generation_past_its_timeout_gets_504_and_leaves_the_batch(store: Path) -> None:
    """``--timeout 0.05``: sent-ulpt's greedy answer to "the film" runs 198 tokens before its EOS
    (about 0.4 s on a 2-core CPU), so the deadline passes mid-decode: the request gets a 504 JSON
    error, its row leaves the running batch, and the server serves on."""
    srv = Server(store, "--timeout", "0.05")
    try:
        body = {"model": "sent-ulpt", "prompt": "the film", "max_tokens": 256, "temperature": 0}
        late = httpx.post(srv.url + "/v1/completions", json=body, timeout=30)
        assert late.status_code == 504, late.text
        assert late.json()["error"]["code"] == "timeout"
        assert late.json()["error"]["message"] == "the request ran past its timeout"
        deadline = time.monotonic() + 10
        while httpx.get(srv.url + "/health").json()["decoding"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert httpx.get(srv.url + "/health").json()["decoding"] == 0
        short = body | {"max_tokens": 1}  # one token fits in the timeout
        assert httpx.post(srv.url + "/v1/completions", json=short, timeout=30).status_code == 200
    finally:
        assert srv.stop()
