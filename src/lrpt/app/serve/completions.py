"""OpenAI's generation endpoints: ``/v1/completions``, ``/v1/chat/completions`` and the
tokenization helpers ``/tokenize`` and ``/detokenize``.

A request becomes one job per row (each prompt × ``n``, or × ``best_of``), submitted together;
their events come back tagged with the row and are shaped into choices (:mod:`.choices`), whole
or streamed as server-sent events in OpenAI's chunk format. Chat messages are rendered with the
chat template (``--chat-template``, else the tokenizer's).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from lrpt.app.serve.choices import Choice, Pieces, completion_logprobs, usage
from lrpt.app.serve.common import Channel, Context, stops
from lrpt.app.serve.config import MAX_INPUTS, ServeConfig
from lrpt.app.serve.errors import Invalid, ServeError
from lrpt.app.serve.httperrors import error_body
from lrpt.app.serve.jobs import Done, Event, GenerateJob, Sampling, Scored, ServingEngine
from lrpt.app.serve.schemas import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)
from lrpt.app.serve.store import Served

Prompt = tuple[list[int], str]  # token ids and the text they read as


def _ends(event: Event) -> bool:
    return isinstance(event, Done)


class Generation(Context):
    """The generation endpoints, over one engine and the server's config."""

    def __init__(self, engine: ServingEngine, config: ServeConfig) -> None:
        super().__init__(engine, config)
        self.pieces = Pieces(self.tokenizer)
        path = config.chat_template
        self.template = path.read_text() if path is not None else None

    # ------------------------------------------------------------------ completions
    async def completions(self, request: CompletionRequest) -> Any:
        served = await self.resolve(request.model)
        tokenized = isinstance(request.prompt, list) and any(
            not isinstance(p, str) for p in request.prompt
        )
        self.require(_features(request) | {"token_prompts": tokenized, "echo": request.echo,
                                           "best_of": (request.best_of or 1) > 1})  # fmt: skip
        n, best = request.n, request.best_of or request.n
        if best < n:
            raise Invalid(f"best_of ({best}) must be at least n ({n})", "best_of")
        if request.stream and best > n:
            raise Invalid("best_of > n cannot stream (the best choices are known only at the "
                          "end): drop stream or best_of", "best_of")  # fmt: skip
        prompts = await self.prompts(request.prompt)
        if len(prompts) * best > MAX_INPUTS:
            param = "best_of" if request.best_of else "n"
            raise Invalid(f"{len(prompts)} prompt(s) × {param} = {best} is {len(prompts) * best} "
                          f"rows, over the limit of {MAX_INPUTS} per request", param)  # fmt: skip
        max_tokens = self.max_tokens(request.max_tokens)
        for ids, _ in prompts:
            self.fits(ids, max_tokens, "prompt")
        channel = self.submit(served, request, prompts, best, max_tokens, request.logprobs,
                              request.echo)  # fmt: skip
        choices = [
            Choice(self.pieces, i, list(ids), echo=text if request.echo else "")
            for i, (ids, text) in enumerate(p for p in prompts for _ in range(best))
        ]
        head = _head("cmpl", "text_completion", request.model)
        if request.stream:
            return _stream(channel, self._stream_completion(channel, choices, head, request))
        await _collect(channel, choices, "completion")
        kept = [c for p in range(len(prompts)) for c in _best(choices[p * best :][:best], n)]
        return head | {
            "choices": [
                {"text": c.text, "index": i,
                 "logprobs": completion_logprobs(c.tokens) if request.logprobs is not None
                 else None, "finish_reason": _done(c).reason}
                for i, c in enumerate(kept)
            ],
            "usage": _usage(channel, choices),
        }  # fmt: skip

    async def prompts(self, prompt: str | list[str] | list[int] | list[list[int]]) -> list[Prompt]:
        """Every prompt shape the completions API allows, as token ids and text."""
        if isinstance(prompt, str):
            return [(await self.tokens(prompt, "prompt"), prompt)]
        if not prompt:
            raise Invalid("prompt is an empty list: give a text, texts or token ids", "prompt")
        if all(isinstance(p, int) for p in prompt):
            return [self._ids(prompt, "prompt")]  # type: ignore[arg-type]
        if len(prompt) > MAX_INPUTS:
            raise Invalid(f"prompt holds {len(prompt)} prompts; the limit is {MAX_INPUTS}",
                          "prompt")  # fmt: skip
        out = []
        for i, one in enumerate(prompt):
            if isinstance(one, str):
                out.append((await self.tokens(one, "prompt", where=f"prompt[{i}]"), one))
            else:
                out.append(self._ids(one, f"prompt[{i}]"))  # type: ignore[arg-type]
        return out

    def _ids(self, ids: Sequence[int], where: str) -> Prompt:
        ids = self.check_ids(ids, "prompt", where)
        return ids, self.tokenizer.decode(ids, skip_special_tokens=True)

    # ------------------------------------------------------------------ chat
    async def chat(self, request: ChatRequest) -> Any:
        served = await self.resolve(request.model)
        self.require(_features(request) | {"chat": True})
        if request.top_logprobs is not None and not request.logprobs:
            raise Invalid("top_logprobs needs logprobs: true", "top_logprobs")
        if request.n > MAX_INPUTS:
            raise Invalid(f"n is {request.n}; the limit is {MAX_INPUTS}", "n")
        ids, text = await self.render(request.messages, True, False, "messages")
        asked, param = request.max_completion_tokens, "max_completion_tokens"
        if asked is None:
            asked, param = request.max_tokens, "max_tokens"
        max_tokens = self.max_tokens(asked, param)
        self.fits(ids, max_tokens, "messages", param)
        k = (request.top_logprobs or 0) if request.logprobs else None
        channel = self.submit(served, request, [(ids, text)], request.n, max_tokens, k, False)
        choices = [Choice(self.pieces, i, list(ids)) for i in range(request.n)]
        head = _head("chatcmpl", "chat.completion", request.model)
        if request.stream:
            return _stream(channel, self._stream_chat(channel, choices, head, request))
        await _collect(channel, choices, "chat")
        return head | {
            "choices": [
                {"index": c.index, "message": {"role": "assistant", "content": c.text},
                 "logprobs": {"content": c.tokens, "refusal": None} if request.logprobs
                 else None, "finish_reason": _done(c).reason}
                for c in choices
            ],
            "usage": _usage(channel, choices),
        }  # fmt: skip

    async def render(
        self, messages: list[ChatMessage], generation: bool, special: bool, param: str
    ) -> Prompt:
        """``messages`` rendered with the chat template, as token ids and text."""
        if self.template is None and not getattr(self.tokenizer, "chat_template", None):
            raise Invalid(f"the model {self.store.model_key!r} has no chat template: start lrpt "
                          "serve with --chat-template FILE, or use /v1/completions", param,
                          "no_chat_template")  # fmt: skip
        conversation = [
            {"role": m.role, "content": m.content if isinstance(m.content, str)
             else "\n".join(part.text for part in m.content)}
            | ({"name": m.name} if m.name is not None else {})
            for m in messages
        ]  # fmt: skip

        def apply() -> str:
            return str(self.tokenizer.apply_chat_template(
                conversation, chat_template=self.template, add_generation_prompt=generation,
                tokenize=False,
            ))  # fmt: skip

        try:
            text = await run_in_threadpool(apply)
        except Exception as err:  # a template is code: whatever it raises is the request's fault
            raise Invalid(f"the chat template failed on these {param}: {type(err).__name__}: "
                          f"{err}", param, "chat_template_failed") from None  # fmt: skip
        return await self.tokens(text, param, special=special), text

    # ------------------------------------------------------------------ tokenization
    async def tokenize(self, request: TokenizeRequest) -> dict[str, Any]:
        if request.model is not None:
            await self.resolve(request.model)
        if (request.prompt is None) == (request.messages is None):
            raise Invalid("give exactly one of prompt and messages", "prompt")
        if request.messages is not None:
            special = bool(request.add_special_tokens)
            gen = request.add_generation_prompt
            ids, _ = await self.render(request.messages, gen, special, "messages")
        else:
            special = request.add_special_tokens is not False
            ids = await self.tokens(str(request.prompt), "prompt", special=special)
        limit = self.config.max_input_tokens
        out: dict[str, Any] = {"count": len(ids), "max_model_len": self.context,
                               "max_input_tokens": limit, "tokens": ids}  # fmt: skip
        if request.return_token_strs:
            out["token_strs"] = self.tokenizer.convert_ids_to_tokens(ids)
        return out

    async def detokenize(self, request: DetokenizeRequest) -> dict[str, Any]:
        if request.model is not None:
            await self.resolve(request.model)
        ids = self.check_ids(request.tokens, "tokens")
        return {"prompt": self.tokenizer.decode(ids)}

    # ------------------------------------------------------------------ rows
    def submit(
        self,
        served: Served | None,
        request: CompletionRequest | ChatRequest,
        prompts: list[Prompt],
        rows: int,
        max_tokens: int,
        logprobs: int | None,
        echo: bool,
    ) -> Channel:
        """Submit ``rows`` jobs per prompt (row ``j`` seeded ``seed + j``); → their channel."""
        stop = stops(request.stop)
        bias = self.bias(request.logit_bias)
        channel = Channel()
        channel.prompt_tokens = sum(len(ids) for ids, _ in prompts)
        deadline = self.deadline()
        for ids, text in prompts:
            for j in range(rows):
                sampling = Sampling(
                    request.temperature, request.top_p,
                    None if request.seed is None else request.seed + j,
                    request.frequency_penalty or 0.0, request.presence_penalty or 0.0, bias,
                )  # fmt: skip
                channel.jobs.append(GenerateJob(
                    served=served, deliver=channel.deliver(len(channel.jobs)), deadline=deadline,
                    ids=ids, text=text, max_tokens=max_tokens, sampling=sampling, stop=stop,
                    logprobs=logprobs, score_prompt=echo and logprobs is not None,
                ))  # fmt: skip
        self.engine.submit(*channel.jobs)
        return channel

    def bias(self, logit_bias: dict[str, float] | None) -> tuple[tuple[int, float], ...]:
        """``logit_bias`` as (token id, bias) pairs, each key checked against the vocabulary."""
        out = []
        for key, value in (logit_bias or {}).items():
            if not key.isdigit() or int(key) >= self.vocab:
                raise Invalid(f"logit_bias: key {key!r} is not a token id (0 to "
                              f"{self.vocab - 1})", "logit_bias")  # fmt: skip
            out.append((int(key), float(value)))
        return tuple(out)

    # ------------------------------------------------------------------ streams
    async def _stream_completion(
        self, channel: Channel, choices: list[Choice], head: dict[str, Any], request: Any
    ) -> AsyncIterator[str]:
        def chunk(index: int, text: str, tokens: Any, reason: str | None) -> str:
            asked = request.logprobs is not None and tokens is not None
            logprobs = completion_logprobs(tokens) if asked else None
            choice = {"text": text, "index": index, "logprobs": logprobs, "finish_reason": reason}
            return _sse(head | {"choices": [choice]})

        for c in choices:
            if c.echo and request.logprobs is None:
                yield chunk(c.index, c.echo, None, None)
        async for index, event in channel.events(_ends):
            text, tokens = choices[index].add(event, "completion")
            if isinstance(event, Scored):
                yield chunk(index, choices[index].echo, tokens, None)
            elif isinstance(event, Done):
                yield chunk(index, "", None, event.reason)
            else:
                yield chunk(index, text, tokens, None)
        if (request.stream_options or {}).get("include_usage"):
            yield _sse(head | {"choices": [], "usage": _usage(channel, choices)})

    async def _stream_chat(
        self, channel: Channel, choices: list[Choice], head: dict[str, Any], request: Any
    ) -> AsyncIterator[str]:
        head = head | {"object": "chat.completion.chunk"}

        def chunk(index: int, delta: dict[str, Any], tokens: Any, reason: str | None) -> str:
            logprobs = {"content": tokens, "refusal": None} if request.logprobs else None
            choice = {"index": index, "delta": delta, "logprobs": logprobs,
                      "finish_reason": reason}  # fmt: skip
            return _sse(head | {"choices": [choice]})

        for c in choices:
            yield chunk(c.index, {"role": "assistant", "content": ""}, [], None)
        async for index, event in channel.events(_ends):
            text, tokens = choices[index].add(event, "chat")
            if isinstance(event, Done):
                yield chunk(index, {}, [], event.reason)
            else:
                yield chunk(index, {"content": text}, tokens, None)
        if (request.stream_options or {}).get("include_usage"):
            yield _sse(head | {"choices": [], "usage": _usage(channel, choices)})


# ---------------------------------------------------------------------- helpers
def _features(request: CompletionRequest | ChatRequest) -> dict[str, bool]:
    """The optional features a request uses (see :data:`lrpt.app.serve.jobs.FEATURES`)."""
    return {
        "n": request.n > 1,
        "stop": request.stop is not None,
        "seed": request.seed is not None,
        "top_p": request.top_p < 1,
        "logprobs": getattr(request, "logprobs", None) not in (None, False),
        "frequency_penalty": bool(request.frequency_penalty),
        "presence_penalty": bool(request.presence_penalty),
        "logit_bias": bool(request.logit_bias),
    }


def _head(prefix: str, kind: str, model: str) -> dict[str, Any]:
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
            "model": model}  # fmt: skip


async def _collect(channel: Channel, choices: list[Choice], shape: str) -> None:
    """Every event of the request's rows, taken into its choice."""
    async for index, event in channel.events(_ends):
        choices[index].add(event, shape)


def _done(choice: Choice) -> Done:
    assert choice.done is not None  # every job ended before the answer is built
    return choice.done


def _best(rows: list[Choice], n: int) -> list[Choice]:
    """The ``n`` rows with the highest log-probability per token (``best_of``), in order."""
    if len(rows) == n:
        return rows
    mean = [_done(c).logprob / max(_done(c).completion_tokens, 1) for c in rows]
    ranked = sorted(range(len(rows)), key=lambda i: -mean[i])[:n]
    return [rows[i] for i in ranked]


def _usage(channel: Channel, choices: list[Choice]) -> dict[str, int]:
    """Each prompt's tokens once; every row's generated tokens (``best_of`` rows included)."""
    generated = sum(_done(c).completion_tokens for c in choices if c.done is not None)
    return usage(channel.prompt_tokens, generated)


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _stream(channel: Channel, chunks: AsyncIterator[str]) -> StreamingResponse:
    """``chunks`` as server-sent events ending with ``data: [DONE]``: an error ends the stream
    with an error event; a client that goes away cancels every row."""

    async def framed() -> AsyncIterator[str]:
        try:
            try:
                async for line in chunks:
                    yield line
            except ServeError as err:
                yield _sse(error_body(err))
            yield "data: [DONE]\n\n"
        finally:
            channel.cancel()

    return StreamingResponse(framed(), media_type="text/event-stream")
