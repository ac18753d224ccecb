"""``lrpt serve --engine vllm`` (marker ``vllm``): a real server on loopback over a store of
SmolLM2-135M prompts of three kinds (pt: a static prompt; dept: a static prompt and an input
update; lopa: each input's own prompt from its encoder), queried with the official ``openai``
client and plain HTTP; its answers are the own engine's (PromptedModel's, in this process)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import torch
from serving import Server
from test_vllm_offline import prompted

from lrpt.app.training.evaluate import Unprompted

pytestmark = pytest.mark.vllm

KEYS = ("pt", "dept", "lopa")
REVIEWS = [
    "a gorgeous, moving film",
    "dull and far too long",
    "it has its moments, but not many",
    "the best thing i have seen this year",
]
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The model and prompts in this process, and the server on a store of the prompts."""
    import lrpt
    from lrpt.app.data.task_format import task_spec
    from lrpt.app.data.tasks import load_task
    from lrpt.app.vllm_engine.settings import require_vllm

    require_vllm()  # not installed: an error naming the extra, never a skip
    base = lrpt.load_model("smollm2-135m")
    spec = task_spec(load_task("mr"), "causal")
    store = tmp_path_factory.mktemp("vllm-serve") / "store"
    prompts = {key: prompted(key, base) for key in KEYS}
    for key, pm in prompts.items():
        encoder = None if pm.method.static else "minilm-l6"
        lrpt.save_prompt(pm, store / key, model_name="smollm2-135m",
                         training={"task": spec.to_dict()}, encoder_name=encoder)  # fmt: skip
    server = Server(store, "--model", "smollm2-135m", "--engine", "vllm", "--vllm-enforce-eager",
                    "--vllm-max-model-len", "1024", start_timeout=600)  # fmt: skip
    yield base, spec, prompts, server
    assert server.stop(), server.output()[-3000:]


def own_text(runner: Any, tokenizer: Any, ids: list[int]) -> str:
    """Greedy text of the own engine (a PromptedModel, or the model without a prompt)."""
    with torch.inference_mode():
        new = runner.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False)
    return str(tokenizer.decode(new[0], skip_special_tokens=True))


def client(server: Server) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=300)


def test_completions_equal_the_own_engine(served: Any) -> None:
    """Every prompt and the bare model, four reviews each, sent at once (one batch of mixed
    prompts in vLLM): vLLM's greedy text is the own engine's."""
    base, _, prompts, server = served
    tok = base.tokenizer
    asks = [(key, f"Review: {review}\nSentiment:") for key in (*KEYS, "smollm2-135m")
            for review in REVIEWS]  # fmt: skip
    openai = client(server)

    def complete(ask: tuple[str, str]) -> str:
        out = openai.completions.create(model=ask[0], prompt=ask[1], max_tokens=NEW_TOKENS,
                                        temperature=0)  # fmt: skip
        return str(out.choices[0].text)

    with ThreadPoolExecutor(len(asks)) as pool:
        got = list(pool.map(complete, asks))
    runners = {**prompts, "smollm2-135m": Unprompted(base.model, "causal")}
    want = [own_text(runners[key], tok, list(tok(text)["input_ids"])) for key, text in asks]
    assert got == want


def test_streamed_chat_equals_the_own_engine(served: Any) -> None:
    base, _, prompts, server = served
    tok = base.tokenizer
    messages = [{"role": "user", "content": "Was 'a gorgeous, moving film' a good review?"}]
    stream = client(server).chat.completions.create(
        model="lopa", messages=messages, max_tokens=NEW_TOKENS, temperature=0, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    rendered = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = list(tok(rendered, add_special_tokens=False)["input_ids"])
    assert text == own_text(prompts["lopa"], tok, ids) and text


@pytest.mark.parametrize("key", KEYS)
def test_classification_scores_equal_the_own_engine(served: Any, key: str) -> None:
    """Each label's summed log-probability within 1e-3 of ``lrpt eval``'s scores."""
    from lrpt.app.data.examples import Example
    from lrpt.app.data.objectives import make_objective

    base, spec, prompts, server = served
    objective = make_objective(spec, base.tokenizer, "causal", base.model.config)
    reply = httpx.post(server.url + "/v1/classify", json={"model": key, "input": REVIEWS},
                       timeout=300)  # fmt: skip
    assert reply.status_code == 200, reply.text
    got = torch.tensor(
        [[r["scores"][label] for label in spec.labels] for r in reply.json()["data"]]
    )
    with torch.inference_mode():
        want = objective.scores(prompts[key], objective.collate([Example(t, "") for t in REVIEWS],
                                                                golds=False))  # fmt: skip
    assert float((got - want).abs().max()) < 1e-3
    assert [r["label"] for r in reply.json()["data"]] == [spec.labels[i] for i in want.argmax(-1)]


def test_echo_is_refused_by_name(served: Any) -> None:
    """vLLM computes no log-probabilities of prompt embeddings' positions: ``echo`` with
    ``logprobs`` cannot be served, and the API says so."""
    from openai import BadRequestError

    with pytest.raises(BadRequestError, match="echo is not supported by the vllm engine"):
        client(served[-1]).completions.create(model="pt", prompt="Review: ok\nSentiment:",
                                              max_tokens=1, echo=True, logprobs=1)  # fmt: skip


def test_health_and_metrics(served: Any) -> None:
    server = served[-1]
    health = httpx.get(server.url + "/health").json()
    assert (health["prompts"], health["refused"], health["queued"]) == (len(KEYS), {}, 0)
    metrics = httpx.get(server.url + "/metrics").text
    generated = [
        line for line in metrics.splitlines() if line.startswith("lrpt_generated_tokens_total")
    ]
    assert generated and float(generated[0].split()[-1]) >= NEW_TOKENS
