"""``lrpt serve``'s OpenAI API as clients use it, against a real server on loopback: the
official ``openai`` client (sync and async, chat and completions, streaming and not), and an
independent multiple-choice scorer (plain httpx, echo + logprobs + max_tokens 0) that must
reproduce ``lrpt eval``'s accuracy; scores equal the prompted model's."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from conftest import tiny
from serving import MR, PROMPTS, Server, save
from test_serve import TEXTS, _alone

from lrpt.app.cli import main
from lrpt.app.data.examples import Example
from lrpt.app.data.objectives import ClassifyObjective, make_objective
from lrpt.app.data.task_format import TaskSpec

# a chat template (tiny-llama has none) that refuses roles it does not know, as real ones do
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + m['role']) }}{% endif %}"
    "<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a film?"}]
# sent-ulpt with answers of one length, on which its (random) scores depend on the review: it
# predicts each label for some of the reviews below (30 "big", 10 "hot"; the closest call is
# 1.2e-3 apart, far over the 1e-6 between the server's scores and lrpt eval's)
PAIR = TaskSpec(
    "mr", MR.labels, "accuracy", MR.template, {"negative": "hot", "positive": "big"}
)  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("openai") / "store"
    for i, name in enumerate(PROMPTS):
        save(root, name, seed=i + 1)
    save(root, "sent-ulpt", seed=1, task=PAIR, to="pair-ulpt")
    return root


@pytest.fixture(scope="module")
def server(store: Path) -> Server:
    template = store.parent / "chat.jinja"
    template.write_text(TEMPLATE)
    srv = Server(store, "--chat-template", str(template))
    yield srv
    assert srv.stop()


def _post(server: Server, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(server.url + path, json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def _ids(text: str) -> list[int]:
    return list(tiny("causal").tokenizer(text)["input_ids"])


def _reference(store: Path, name: str, ids: list[int], k: int) -> tuple[Any, Any, float]:
    """Each token's log-probability (after the first) and the top ``k`` as ``lrpt``'s
    PromptedModel (or the bare model) gives them, and the prompted model's own mean loss."""
    tensor = torch.tensor([ids])
    text = tiny("causal").tokenizer.decode(ids, skip_special_tokens=True)
    with torch.no_grad():
        if name == "tiny-llama":
            model = tiny("causal").model.eval()
            out = model(tensor, labels=tensor)
            predictors = out.logits[0, :-1]
        else:
            pm = _alone(store, name)
            ins = pm.insert(tensor, texts=[text])
            full = pm.model(inputs_embeds=ins.embeds, attention_mask=ins.attention_mask,
                            position_ids=ins.position_ids).logits  # fmt: skip
            predictors = full[0, ins.token_positions[0, 1:] - 1]
            out = pm(tensor, labels=tensor, texts=[text])
    logp = predictors.float().log_softmax(-1)
    chosen = logp.gather(1, tensor[0, 1:, None])[:, 0]
    return chosen, logp.topk(k, -1), float(out.loss)


@pytest.mark.parametrize("name", ["sent-ulpt", "sent-idpg", "tiny-llama"])
def test_echo_scores_are_the_prompted_models(server: Server, store: Path, name: str) -> None:
    """Shared-prefix, instance-dependent and bare: each prompt token's log-probability (and the
    top 3) within 1e-4 of PromptedModel's; their mean is PromptedModel's loss on the text."""
    text = TEXTS[0]
    body = {"model": name, "prompt": text, "max_tokens": 0, "echo": True, "logprobs": 3}
    choice = _post(server, "/v1/completions", body)["choices"][0]
    assert choice["text"] == text and choice["finish_reason"] == "length"
    got = choice["logprobs"]
    ids = _ids(text)
    assert "".join(got["tokens"]) == "<s>" + text and len(got["tokens"]) == len(ids)
    assert got["token_logprobs"][0] is None and got["top_logprobs"][0] is None
    assert got["text_offset"] == [0, *range(len(text))]  # the BOS adds no text
    chosen, (top_values, _), loss = _reference(store, name, ids, 3)
    assert got["token_logprobs"][1:] == pytest.approx(chosen.tolist(), abs=1e-4)
    for position, values in zip(got["top_logprobs"][1:], top_values.tolist(), strict=True):
        # tokens that read the same (bytes of no character) share a key: the likeliest stays
        kept = sorted(position.values(), reverse=True)
        assert kept[0] == pytest.approx(values[0], abs=1e-4)
        assert all(min(abs(v - w) for w in values) < 1e-4 for v in kept)
    assert -sum(got["token_logprobs"][1:]) / (len(ids) - 1) == pytest.approx(loss, abs=1e-4)


@pytest.mark.parametrize("name", ["sent-ulpt", "sent-pt"])
def test_echo_scores_agree_with_classify(server: Server, store: Path, name: str) -> None:
    """A label's /v1/classify score is the summed echo log-probability of its answer tokens
    after the filled template (sent-pt's answers are one and two tokens long)."""
    spec = PROMPTS[name][2]
    tok = tiny("causal").tokenizer
    objective = make_objective(spec, tok, "causal")
    assert isinstance(objective, ClassifyObjective)
    row = objective.encode(Example(TEXTS[1], ""))
    body = {"model": name, "prompt": [row + word for word in objective.words], "max_tokens": 0,
            "echo": True, "logprobs": 0}  # fmt: skip
    choices = _post(server, "/v1/completions", body)["choices"]
    summed = [sum(c["logprobs"]["token_logprobs"][-len(word) :])
              for c, word in zip(choices, objective.words, strict=True)]  # fmt: skip
    classified = _post(server, "/v1/classify", {"model": name, "input": TEXTS[1]})
    assert summed == pytest.approx(list(classified["data"][0]["scores"].values()), abs=1e-4)


def _score_choices(url: str, name: str, examples: list[dict[str, str]]) -> list[str]:
    """An evaluation client of its own: the task format from GET /v1/prompts/NAME, tokens from
    /tokenize, each answer scored as the summed log-probability of its tokens after the
    context (echo + logprobs + max_tokens 0), the best answer taken."""
    with httpx.Client(base_url=url, timeout=60) as client:
        task = client.get(f"/v1/prompts/{name}").json()["task"]

        def tokens(text: str) -> list[int]:
            return client.post("/tokenize", json={"model": name, "prompt": text}).json()["tokens"]

        rows, spans = [], []
        for example in examples:
            context = task["template"].format(text=example["text"], text_pair="")
            start = tokens(context)
            for label in task["labels"]:
                whole = tokens(f"{context} {task['verbalizer'][label]}")
                assert whole[: len(start)] == start
                rows.append(whole)
                spans.append(len(whole) - len(start))
        scores = []
        for first in range(0, len(rows), 32):
            body = {"model": name, "prompt": rows[first : first + 32], "max_tokens": 0,
                    "echo": True, "logprobs": 1}  # fmt: skip
            for choice in client.post("/v1/completions", json=body).json()["choices"]:
                span = spans[first + choice["index"]]
                scores.append(sum(choice["logprobs"]["token_logprobs"][-span:]))
    labels = task["labels"]
    per = len(labels)
    return [labels[max(range(per), key=lambda c: scores[i * per + c])]
            for i in range(len(examples))]  # fmt: skip


def test_an_evaluation_client_reproduces_lrpt_eval(
    server: Server, store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "pair-ulpt"
    words = ["quiet", "lovely", "dull", "long", "bright", "grim", "warm", "odd", "flat", "bold"]
    examples = [{"text": f"a {a} and {b} film", "label": MR.labels[(i * 3 + j) % 5 == 0]}
                for i, a in enumerate(words) for j, b in enumerate(words[:4])]  # fmt: skip
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(e) + "\n" for e in examples))
    predicted = _score_choices(server.url, name, examples)
    accuracy = sum(p == e["label"] for p, e in zip(predicted, examples, strict=True)) / 40
    assert main(["eval", "--prompt", str(store / name), "--data", str(data), "--validation-data",
                 str(data), "--test-data", str(data), "--json"]) == 0  # fmt: skip
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["examples"] == 40
    assert accuracy == evaluated["metrics"]["accuracy"]
    assert len(set(predicted)) == 2  # both labels predicted: the comparison can fail


def _single(server: Server, body: dict[str, Any]) -> Any:
    return _post(server, "/v1/completions", body)["choices"][0]


def test_the_openai_client_sync_chat_and_completions(server: Server) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    chat = client.chat.completions.create(model="sent-pt", messages=CHAT, max_tokens=6,
                                          temperature=0)  # type: ignore[arg-type]  # fmt: skip
    ids = _post(server, "/tokenize", {"model": "sent-pt", "messages": CHAT})["tokens"]
    assert ids[0] == 1  # the template's BOS, read as the BOS token
    plain = client.completions.create(model="sent-pt", prompt=ids, max_tokens=6, temperature=0)
    assert chat.choices[0].message.content == plain.choices[0].text
    assert chat.choices[0].message.role == "assistant" and chat.object == "chat.completion"
    assert chat.usage is not None and chat.usage.prompt_tokens == len(ids)
    stream = client.chat.completions.create(
        model="sent-pt", messages=CHAT, max_tokens=6, temperature=0, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == chat.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == chat.choices[0].finish_reason
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    scored = client.chat.completions.create(model="sent-pt", messages=CHAT, max_tokens=6,
                                            temperature=0, logprobs=True, top_logprobs=2)  # type: ignore[arg-type]  # fmt: skip
    content = scored.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == scored.usage.completion_tokens  # type: ignore[union-attr]
    for token in content:  # greedy: each token is the likeliest
        assert len(token.top_logprobs) == 2 and token.logprob == token.top_logprobs[0].logprob
        assert token.bytes == list(token.token.encode())
    many = client.completions.create(model="sent-ulpt", prompt=["the film", "a day"], n=2,
                                     max_tokens=4, temperature=0)  # fmt: skip
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    texts = [c.text for c in many.choices]
    alone = client.completions.create(model="sent-ulpt", prompt="a day", max_tokens=4,
                                      temperature=0)  # fmt: skip
    assert texts[0] == texts[1] and texts[2] == texts[3] == alone.choices[0].text
    parts: dict[int, str] = {}
    for chunk in client.completions.create(model="sent-ulpt", prompt=["the film", "a day"],
                                           max_tokens=4, temperature=0, stream=True):  # fmt: skip
        for choice in chunk.choices:
            parts[choice.index] = parts.get(choice.index, "") + choice.text
    assert parts == {0: texts[0], 1: texts[2]}


def test_the_openai_client_async(server: Server) -> None:
    from openai import AsyncOpenAI

    async def run() -> list[str]:
        client = AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        args: dict[str, Any] = {"model": "topic-dpt", "max_tokens": 5, "temperature": 0}
        chat = await client.chat.completions.create(messages=CHAT, **args)
        chat_stream = await client.chat.completions.create(messages=CHAT, stream=True, **args)
        chat_parts = [c.choices[0].delta.content or "" async for c in chat_stream if c.choices]
        done = await client.completions.create(prompt="once upon", **args)
        stream = await client.completions.create(prompt="once upon", stream=True, **args)
        parts = [c.choices[0].text async for c in stream if c.choices]
        await client.close()
        return [str(chat.choices[0].message.content), "".join(chat_parts),
                done.choices[0].text, "".join(parts)]  # fmt: skip

    chat, chat_streamed, text, streamed = asyncio.run(run())
    assert chat == chat_streamed and text == streamed
    ids = _post(server, "/tokenize", {"model": "topic-dpt", "messages": CHAT})["tokens"]
    body = {"model": "topic-dpt", "prompt": ids, "max_tokens": 5, "temperature": 0}
    assert chat == _single(server, body)["text"]


def test_n_choices_are_seeded_in_turn_and_best_of_keeps_the_likeliest(server: Server) -> None:
    body = {"model": "sent-ulpt", "prompt": "the film", "max_tokens": 6, "temperature": 1.0,
            "seed": 5, "logprobs": 0}  # fmt: skip
    many = _post(server, "/v1/completions", body | {"n": 3})["choices"]
    alone = [_single(server, body | {"seed": 5 + j}) for j in range(3)]
    assert [c["text"] for c in many] == [c["text"] for c in alone]
    assert len({c["text"] for c in alone}) == 3  # sampled: the seeds give different texts
    means = [sum(c["logprobs"]["token_logprobs"]) / len(c["logprobs"]["tokens"]) for c in alone]
    best = _post(server, "/v1/completions", body | {"best_of": 3})
    assert [c["text"] for c in best["choices"]] == [alone[means.index(max(means))]["text"]]
    assert best["usage"]["completion_tokens"] == sum(len(c["logprobs"]["tokens"]) for c in alone)


def _greedy_reference(
    store: Path, name: str, prompt: str, steps: int, penalties: tuple[float, float],
    bias: dict[int, float],
) -> str:  # fmt: skip
    """Greedy decoding with penalties and bias, one full forward of PromptedModel per token."""
    pm = _alone(store, name)
    ids = list(pm.tokenizer(prompt)["input_ids"])
    out: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            logits = pm(torch.tensor([ids + out]), logits_to_keep=1).logits[0, -1].float()
            for token in set(out):
                logits[token] -= penalties[0] * out.count(token) + penalties[1]
            for token, value in bias.items():
                logits[token] += value
            token = int(logits.argmax())
            if token == pm.tokenizer.eos_token_id:
                break
            out.append(token)
    return str(pm.tokenizer.decode(out, skip_special_tokens=True))


def test_penalties_and_logit_bias(server: Server, store: Path) -> None:
    body = {"model": "sent-ulpt", "prompt": "the film", "max_tokens": 10, "temperature": 0}
    penalised = body | {"frequency_penalty": 1.5, "presence_penalty": 0.5, "logit_bias": {"80": 2}}
    got = _single(server, penalised)["text"]
    plain = _single(server, body)["text"]
    assert got == _greedy_reference(store, "sent-ulpt", "the film", 10, (1.5, 0.5), {80: 2})
    assert plain == _greedy_reference(store, "sent-ulpt", "the film", 10, (0, 0), {})
    assert got != plain
    z = _ids("z")[-1]
    assert _single(server, body | {"logit_bias": {str(z): 100}})["text"] == "z" * 10


def test_tokenize_and_detokenize(server: Server) -> None:
    text = "a quiet, lovely film"
    got = _post(
        server, "/tokenize", {"model": "sent-pt", "prompt": text, "return_token_strs": True}
    )
    assert got["tokens"] == _ids(text) and got["count"] == len(text) + 1
    assert got["max_model_len"] == 1024 and got["token_strs"][0] == "<s>"
    bare = _post(server, "/tokenize", {"prompt": text, "add_special_tokens": False})
    assert bare["tokens"] == got["tokens"][1:]
    assert _post(server, "/detokenize", {"tokens": bare["tokens"]})["prompt"] == text
    chat = _post(server, "/tokenize", {"messages": CHAT, "add_generation_prompt": False})
    assert _post(server, "/detokenize", {"tokens": chat["tokens"]})["prompt"] == (
        "<s><|system|>be brief\n<|user|>a film?\n"
    )


@pytest.mark.parametrize(
    ("path", "body", "param", "code"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, "messages",
         "invalid_type"),
        ("/v1/chat/completions", {"messages": []}, "messages", "invalid_type"),
        ("/v1/chat/completions", {"messages": [{"role": "developer", "content": "x"}]},
         "messages", "chat_template_failed"),
        ("/v1/chat/completions", {"messages": CHAT, "top_logprobs": 2}, "top_logprobs", None),
        ("/v1/chat/completions", {"messages": CHAT, "logprobs": True, "top_logprobs": 21},
         "top_logprobs", "invalid_type"),
        ("/v1/chat/completions", {"messages": CHAT, "max_completion_tokens": 9999},
         "max_completion_tokens", None),
        ("/v1/chat/completions", {"messages": CHAT, "tools": []}, "tools", "unknown_field"),
        ("/v1/completions", {"prompt": "x", "logprobs": 21}, "logprobs", "invalid_type"),
        ("/v1/completions", {"prompt": "x", "logprobs": -1}, "logprobs", "invalid_type"),
        ("/v1/completions", {"prompt": []}, "prompt", None),
        ("/v1/completions", {"prompt": [[1, 5], [1, 9999]]}, "prompt", None),
        ("/v1/completions", {"prompt": "x", "n": 2, "best_of": 1}, "best_of", None),
        ("/v1/completions", {"prompt": "x", "best_of": 3, "stream": True}, "best_of", None),
        ("/v1/completions", {"prompt": "x", "n": 33}, "n", None),
        ("/v1/completions", {"prompt": "x", "logit_bias": {"abc": 1}}, "logit_bias", None),
        ("/v1/completions", {"prompt": "x", "logit_bias": {"5": 500}}, "logit_bias",
         "invalid_type"),
        ("/v1/completions", {"prompt": "x", "frequency_penalty": 3}, "frequency_penalty",
         "invalid_type"),
        ("/v1/completions", {"prompt": "x", "suffix": "y"}, "suffix", "invalid_type"),
        ("/tokenize", {}, "prompt", None),
        ("/detokenize", {"tokens": [9999]}, "tokens", None),
    ],
)  # fmt: skip
def test_bad_requests_name_the_field(
    server: Server, path: str, body: dict[str, Any], param: str, code: str | None
) -> None:
    response = httpx.post(server.url + path, json={"model": "sent-pt"} | body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and param in error["message"], error
    if code is not None:
        assert error["code"] == code


def test_no_chat_template_and_unsupported_fields_are_clear_400s(store: Path) -> None:
    """In process (the refusals come before any job runs): a model without a chat template, and
    an engine that says it lacks a feature."""
    from fastapi.testclient import TestClient

    from lrpt.app.serve.api import create_app
    from lrpt.app.serve.config import ServeConfig
    from lrpt.app.serve.engine import Engine
    from lrpt.app.serve.jobs import FEATURES
    from lrpt.app.serve.metrics import ServeMetrics
    from lrpt.app.serve.store import PromptStore

    class Minimal(Engine):
        name = "minimal"
        supports = FEATURES - {"echo", "logprobs"}

    base = tiny("causal")
    prompts = PromptStore(store, base.model.eval(), base.tokenizer, "tiny-llama")
    prompts.load_all()
    config = ServeConfig("tiny-llama", store)
    client = TestClient(create_app(Minimal(prompts, ServeMetrics()), ServeMetrics(), config))
    chat = client.post("/v1/chat/completions", json={"model": "sent-pt", "messages": CHAT})
    assert chat.status_code == 400 and chat.json()["error"]["code"] == "no_chat_template"
    assert "has no chat template: start lrpt serve with --chat-template" in chat.text
    for field, value in [("echo", True), ("logprobs", 2)]:
        body = {"model": "sent-pt", "prompt": "x", field: value}
        refused = client.post("/v1/completions", json=body).json()["error"]
        assert refused == {"message": f"{field} is not supported by the minimal engine",
                           "type": "invalid_request_error", "param": field,
                           "code": "unsupported_field"}  # fmt: skip


def _stream_chunks(server: Server, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", server.url + "/v1/completions", json=body | {"stream": True}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: "))["choices"][0] for line in lines[:-1]]


def test_streamed_log_probabilities_and_stop_strings(server: Server) -> None:
    """A stream carries the same text, tokens and offsets as the whole answer; a stop string
    cuts the tokens with the text."""
    body = {"model": "sent-ulpt", "prompt": "the film", "max_tokens": 12, "temperature": 0,
            "echo": True, "logprobs": 2}  # fmt: skip
    whole = _single(server, body)
    chunks = _stream_chunks(server, body)
    assert "".join(c["text"] for c in chunks) == whole["text"]
    streamed = [c["logprobs"] for c in chunks if c["logprobs"] is not None]
    for key in ("tokens", "token_logprobs", "text_offset"):
        assert [x for part in streamed for x in part[key]] == whole["logprobs"][key]
    generated = whole["text"][len("the film") :]
    assert len(generated) >= 6
    stop = generated[3:5]
    cut = _single(server, body | {"echo": False, "stop": stop})
    assert cut["text"] == generated[: generated.index(stop)] and cut["finish_reason"] == "stop"
    assert "".join(cut["logprobs"]["tokens"]) == cut["text"]
