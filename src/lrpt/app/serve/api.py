"""The HTTP layer of ``lrpt serve``: FastAPI routes in the OpenAI API's conventions.

FastAPI validates each request body against its model (:mod:`~lrpt.app.serve.schemas`) and
uvicorn is a production ASGI server (HTTP/1.1 keep-alive, graceful shutdown that waits for
in-flight requests). A route resolves the request's prompt through the store, hands the engine
a job and turns the engine's events into a response; errors are
:class:`~lrpt.app.serve.errors.ServeError` kinds, answered in OpenAI's shape by
:mod:`~lrpt.app.serve.httperrors` (the one place they become status codes).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from lrpt.app.serve.config import MAX_INPUTS, ServeConfig
from lrpt.app.serve.engine import Engine
from lrpt.app.serve.errors import (
    Forbidden,
    Invalid,
    ServeError,
    TimedOut,
    Unauthorized,
    UnknownModel,
)
from lrpt.app.serve.guard import Guard
from lrpt.app.serve.httperrors import body, error_body, error_response, validation_error
from lrpt.app.serve.jobs import (
    ClassifyJob,
    Delta,
    Done,
    Event,
    Failed,
    GenerateJob,
    Job,
    Labels,
    Sampling,
)
from lrpt.app.serve.metrics import ServeMetrics
from lrpt.app.serve.schemas import ClassifyRequest, CompletionRequest
from lrpt.app.serve.store import Served, check_name
from lrpt.artifact import ArtifactError


class Routes:
    """The endpoints, over one engine (and its store) and the server's config."""

    def __init__(self, engine: Engine, metrics: ServeMetrics, config: ServeConfig) -> None:
        self.engine = engine
        self.store = engine.store
        self.metrics = metrics
        self.config = config
        self.context = int(getattr(self.store.model.config, "max_position_embeddings", 0) or 0)

    def auth(self, admin: bool) -> Callable[[Request], Awaitable[None]]:
        """Admin endpoints need the admin key; the others the API key (or the admin key)
        when an API key is set. Without any key (loopback only) auth is off."""
        config = self.config
        keys = [config.admin_key] if admin else [config.api_key, config.admin_key]
        wanted = [k.encode() for k in keys if k]
        required = config.admin_key is not None if admin else config.api_key is not None
        is_off = config.api_key is None and config.admin_key is None

        async def check(request: Request) -> None:
            if is_off:
                return
            if admin and not required:
                raise Forbidden("prompt management is off: the server was started without "
                                "--admin-key")  # fmt: skip
            if not required:
                return
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not any(
                hmac.compare_digest(token.encode(), k) for k in wanted
            ):
                what = "the admin key" if admin else "an API key"
                raise Unauthorized(f"missing or wrong bearer token: this endpoint needs {what} "
                                   "(Authorization: Bearer KEY)")  # fmt: skip

        return check

    async def resolve(self, name: str) -> Served | None:
        """The prompt ``name`` names (None: the base model). A prompt another replica wrote into
        a shared store since this one started is loaded now (see docs/serving.md)."""
        try:
            return self.store.resolve(name)
        except UnknownModel:
            served = await run_in_threadpool(self.store.discover, name)
            if served is None:
                raise
        await run_in_threadpool(self.engine.install, served)
        return served

    def deadline(self) -> float:
        return time.monotonic() + self.config.timeout

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.store.model_key, "prompts": len(self.store.prompts),
                "refused": self.store.refused, "queued": self.engine.queued,
                "decoding": self.engine.decoding}  # fmt: skip

    async def prometheus(self) -> Response:
        return Response(self.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def models(self) -> dict[str, Any]:
        base = self.store.model_key
        data = [{"id": base, "object": "model", "created": 0, "owned_by": "lrpt"}]
        data += [
            {"id": name, "object": "model", "created": 0, "owned_by": "lrpt", "root": base,
             "parent": base, "method": s.meta["method"], "classify": s.objective is not None}
            for name, s in sorted(self.store.prompts.items())
        ]  # fmt: skip
        return {"object": "list", "data": data}

    async def completions(self, request: CompletionRequest) -> Any:
        served = await self.resolve(request.model)
        if request.n != 1:
            raise Invalid(f"n must be 1 (one completion per request), got {request.n}", "n")
        prompt = request.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise Invalid(f"prompt must be one string (a list of exactly one), got a list "
                              f"of {len(prompt)}", "prompt")  # fmt: skip
            prompt = prompt[0]
        max_tokens = (
            request.max_tokens if request.max_tokens is not None else self.config.max_tokens
        )
        if not 1 <= max_tokens <= self.config.max_tokens:
            cap = self.config.max_tokens
            raise Invalid(f"max_tokens must be between 1 and {cap}, got {max_tokens}", "max_tokens")
        stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        if len(stop) > 4 or any(not s for s in stop):
            raise Invalid("stop must be up to 4 non-empty strings", "stop")
        ids = await self.tokens(prompt, "prompt")
        if self.context and len(ids) + max_tokens > self.context:
            raise Invalid(f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceeds the "
                          f"model's context of {self.context} tokens", "max_tokens")  # fmt: skip
        events, deliver = _channel()
        sampling = Sampling(request.temperature, request.top_p, request.seed)
        job = GenerateJob(served=served, deliver=deliver, deadline=self.deadline(), ids=ids,
                          text=prompt, max_tokens=max_tokens, sampling=sampling,
                          stop=stop)  # fmt: skip
        self.engine.submit(job)
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": int(time.time()), "model": request.model}  # fmt: skip
        if request.stream:
            usage = bool((request.stream_options or {}).get("include_usage"))
            return StreamingResponse(_stream(job, events, head, usage),
                                     media_type="text/event-stream")  # fmt: skip
        parts: list[str] = []
        while True:
            event = await _next(job, events)
            if isinstance(event, Delta):
                parts.append(event.text)
            elif isinstance(event, Done):
                choice = {"text": "".join(parts), "index": 0, "logprobs": None,
                          "finish_reason": event.reason}  # fmt: skip
                return head | {"choices": [choice], "usage": _usage(event)}
            else:
                raise _failure(event)

    async def classify(self, request: ClassifyRequest) -> dict[str, Any]:
        await self.resolve(request.model)
        served, objective = self.store.classifier(request.model)
        texts = [request.input] if isinstance(request.input, str) else request.input
        if not 1 <= len(texts) <= MAX_INPUTS:
            raise Invalid(f"input must hold 1 to {MAX_INPUTS} texts, got {len(texts)}", "input")
        counts = [len(await self.tokens(t, "input")) for t in texts]
        events, deliver = _channel()
        job = ClassifyJob(served=served, objective=objective, deliver=deliver,
                          deadline=self.deadline(), texts=texts)  # fmt: skip
        self.engine.submit(job)
        event = await _next(job, events)
        if not isinstance(event, Labels):
            raise _failure(event)
        data = [{"index": i, **r} for i, r in enumerate(event.results)]
        usage = {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}
        return {"object": "list", "model": request.model, "data": data, "usage": usage}

    async def tokens(self, text: str, param: str) -> list[int]:
        """``text``'s token ids, refusing an empty text or one over ``--max-input-tokens``."""
        limit = self.config.max_input_tokens
        if not text.strip():
            raise Invalid(f"{param} is empty", param, "empty_input")
        if len(text) > limit * 64:  # far over the limit whatever the tokenizer: no need to count
            raise Invalid(f"{param} is longer than {limit} tokens", param, "input_too_long")
        tokenizer = self.store.tokenizer
        ids = await run_in_threadpool(lambda: list(tokenizer(text)["input_ids"]))
        if len(ids) > limit:
            raise Invalid(f"{param} has {len(ids)} tokens; the limit is {limit}", param,
                          "input_too_long")  # fmt: skip
        return ids

    async def list_prompts(self) -> dict[str, Any]:
        data = [s.describe() for _, s in sorted(self.store.prompts.items())]
        return {"object": "list", "data": data, "refused": self.store.refused}

    async def inspect_prompt(self, name: str) -> dict[str, Any]:
        return self.store.prompt(name).describe()

    async def upload_prompt(self, name: str, request: Request) -> JSONResponse:
        try:
            check_name(name)
        except ValueError as err:
            raise Invalid(str(err), "name", "invalid_name") from None
        archive = await request.body()
        if not archive:
            raise Invalid("the body is empty: send a tar archive of the artifact's files", "body")
        existed = name in self.store.prompts
        try:
            served = await run_in_threadpool(self.store.stage, name, archive)
        except (ArtifactError, ValueError) as err:
            raise Invalid(f"the artifact was refused: {err}", "body", "invalid_artifact") from None
        await run_in_threadpool(self.engine.install, served)
        return JSONResponse(served.describe(), status_code=200 if existed else 201)

    async def delete_prompt(self, name: str) -> dict[str, Any]:
        self.store.prompt(name)
        await run_in_threadpool(self.engine.uninstall, name)
        return {"id": name, "object": "prompt", "deleted": True}


def create_app(engine: Engine, metrics: ServeMetrics, config: ServeConfig) -> FastAPI:
    """The ASGI app serving ``engine``'s store of prompts."""
    app = FastAPI(title="lrpt serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, config=config, metrics=metrics)
    app.state.engine = engine
    routes = Routes(engine, metrics, config)
    user = Depends(routes.auth(admin=False))
    admin = Depends(routes.auth(admin=True))

    @app.exception_handler(ServeError)
    async def serve_error(_: Request, err: ServeError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(err))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        content = body(err.status_code, str(err.detail), None, None)
        return JSONResponse(content, status_code=err.status_code)

    app.get("/health")(routes.health)
    app.get("/metrics", dependencies=[user])(routes.prometheus)
    app.get("/v1/models", dependencies=[user])(routes.models)
    app.post("/v1/completions", dependencies=[user])(routes.completions)
    app.post("/v1/classify", dependencies=[user])(routes.classify)
    app.get("/v1/prompts", dependencies=[user])(routes.list_prompts)
    app.get("/v1/prompts/{name}", dependencies=[user])(routes.inspect_prompt)
    app.put("/v1/prompts/{name}", dependencies=[admin])(routes.upload_prompt)
    app.delete("/v1/prompts/{name}", dependencies=[admin])(routes.delete_prompt)
    return app


# ---------------------------------------------------------------------- events
def _channel() -> tuple[asyncio.Queue[Event], Callable[[Event], None]]:
    """A queue the model thread delivers a request's events into."""
    events: asyncio.Queue[Event] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def deliver(event: Event) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    return events, deliver


async def _next(job: Job, events: asyncio.Queue[Event]) -> Event:
    """The job's next event; past its deadline (plus a second for the engine to say so
    itself) the job is cancelled and :class:`TimedOut` raised."""
    try:
        return await asyncio.wait_for(
            events.get(), timeout=max(job.deadline - time.monotonic(), 0) + 1
        )
    except TimeoutError:
        job.cancelled = True
        raise TimedOut() from None


def _failure(event: Event) -> ServeError:
    """The error an event that should not come here stands for."""
    if isinstance(event, Failed):
        return event.error
    raise TypeError(f"unexpected event {event!r}")


def _usage(done: Done) -> dict[str, int]:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}  # fmt: skip


async def _stream(
    job: GenerateJob, events: asyncio.Queue[Event], head: dict[str, Any], include_usage: bool
) -> AsyncIterator[str]:
    """Server-sent events in the OpenAI chunk format, ending with ``data: [DONE]``."""

    def chunk(text: str, reason: str | None) -> str:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": reason}
        return f"data: {json.dumps(head | {'choices': [choice]})}\n\n"

    try:
        while True:
            try:
                event = await _next(job, events)
            except ServeError as err:
                event = Failed(err)
            if isinstance(event, Delta):
                yield chunk(event.text, None)
            elif isinstance(event, Done):
                yield chunk("", event.reason)
                if include_usage:
                    last = head | {"choices": [], "usage": _usage(event)}
                    yield f"data: {json.dumps(last)}\n\n"
                break
            else:
                yield f"data: {json.dumps(error_body(_failure(event)))}\n\n"
                break
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled = True  # a client that went away stops its row
