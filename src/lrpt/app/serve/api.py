"""The HTTP layer of ``lrpt serve``: FastAPI routes in the OpenAI API's conventions.

FastAPI validates each request body against a typed pydantic model and uvicorn is a production
ASGI server (HTTP/1.1 keep-alive, graceful shutdown that waits for in-flight requests). Errors
always have the OpenAI shape ``{"error": {"message", "type", "param", "code"}}`` and name the
field at fault; overload answers 429 (queue full) or 503 (shutting down) with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from lrpt.app.serve.engine import (
    ClassifyJob,
    Engine,
    Failure,
    GenerateJob,
    Job,
    Overloaded,
    Unavailable,
)
from lrpt.app.serve.metrics import ServeMetrics
from lrpt.app.serve.store import PromptStore, check_name
from lrpt.artifact import ArtifactError

RETRY_AFTER = "1"  # seconds, for 429 and 503


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and the keys that guard the API (None: no auth)."""

    api_key: str | None = None
    admin_key: str | None = None
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 64 << 20
    max_input_tokens: int = 1024
    max_tokens: int = 256
    max_inputs: int = 32  # texts per classification request
    timeout: float = 60.0


class ApiError(Exception):
    """An error answered in the OpenAI shape."""

    def __init__(self, failure: Failure, headers: dict[str, str] | None = None) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.headers = headers or {}


def _bad(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    return ApiError(Failure(400, message, param, code))


def error_body(failure: Failure) -> dict[str, Any]:
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error"}  # fmt: skip
    default = "invalid_request_error" if failure.status < 500 else "server_error"
    return {
        "error": {
            "message": failure.message,
            "type": kind.get(failure.status, default),
            "param": failure.param,
            "code": failure.code,
        }
    }


# ---------------------------------------------------------------------- request bodies
class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class CompletionRequest(_Body):
    """``POST /v1/completions`` (the OpenAI fields lrpt implements; others are refused)."""

    model: str
    prompt: str | list[str]
    max_tokens: int | None = 16
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    n: int = 1
    stream: bool = False
    stream_options: dict[str, bool] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    echo: Literal[False] = False
    logprobs: None = None
    best_of: Literal[1] | None = None
    suffix: None = None
    presence_penalty: Literal[0] | None = None
    frequency_penalty: Literal[0] | None = None
    user: str | None = None


class ClassifyRequest(_Body):
    """``POST /v1/classify``: ``input`` is one text or a list of texts."""

    model: str
    input: str | list[str]


# ---------------------------------------------------------------------- the app
class Routes:
    """The endpoints, over one store, engine and set of limits."""

    def __init__(
        self, store: PromptStore, engine: Engine, metrics: ServeMetrics, limits: Limits
    ) -> None:
        self.store = store
        self.engine = engine
        self.metrics = metrics
        self.limits = limits
        self.tokenizer = store.tokenizer
        self.base = engine.base_name
        self.context = int(getattr(store.model.config, "max_position_embeddings", 0) or 0)

    def auth(self, admin: bool) -> Callable[[Request], Awaitable[None]]:
        """Admin endpoints need the admin key; the others the API key (or the admin key)
        when an API key is set. Without any key (loopback only) auth is off."""
        keys = [self.limits.admin_key] if admin else [self.limits.api_key, self.limits.admin_key]
        wanted = [k.encode() for k in keys if k]
        required = self.limits.admin_key is not None if admin else self.limits.api_key is not None
        is_off = self.limits.api_key is None and self.limits.admin_key is None

        async def check(request: Request) -> None:
            if is_off:
                return
            if admin and not required:
                raise ApiError(Failure(403, "prompt management is off: the server was started "
                                       "without --admin-key", None, "admin_disabled"))  # fmt: skip
            if not required:
                return
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not any(
                hmac.compare_digest(token.encode(), k) for k in wanted
            ):
                what = "the admin key" if admin else "an API key"
                raise ApiError(
                    Failure(401, f"missing or wrong bearer token: this endpoint needs {what} "
                            "(Authorization: Bearer KEY)", None, "invalid_api_key"),
                    {"WWW-Authenticate": "Bearer"},
                )  # fmt: skip

        return check

    async def known(self, name: str) -> None:
        """404 unless ``name`` is the base model or a prompt; a prompt another replica wrote
        into a shared store since this one started is loaded now (see docs/serving.md)."""
        if name == self.base or name in self.store.prompts:
            return
        served = await run_in_threadpool(self.store.discover, name)
        if served is not None:
            await run_in_threadpool(self.engine.install, served)
            return
        raise ApiError(Failure(404, f"no prompt or model {name!r}: GET /v1/models lists them",
                               "model", "model_not_found"))  # fmt: skip

    def submit(self, job: Job) -> None:
        try:
            self.engine.submit(job)
        except Overloaded as err:
            raise ApiError(Failure(429, str(err), None, "queue_full"),
                           {"Retry-After": RETRY_AFTER}) from None  # fmt: skip
        except Unavailable as err:
            raise ApiError(Failure(503, str(err), None, "shutting_down"),
                           {"Retry-After": RETRY_AFTER}) from None  # fmt: skip

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.base, "prompts": len(self.store.prompts),
                "refused": self.store.refused, "queued": self.engine.queued,
                "decoding": self.engine.decoding}  # fmt: skip

    async def prometheus(self) -> Response:
        return Response(self.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def models(self) -> dict[str, Any]:
        data = [{"id": self.base, "object": "model", "created": 0, "owned_by": "lrpt"}]
        data += [
            {"id": name, "object": "model", "created": 0, "owned_by": "lrpt", "root": self.base,
             "parent": self.base, "method": s.meta["method"], "classify": s.objective is not None}
            for name, s in sorted(self.store.prompts.items())
        ]  # fmt: skip
        return {"object": "list", "data": data}

    async def completions(self, body: CompletionRequest) -> Any:
        await self.known(body.model)
        if body.n != 1:
            raise _bad(f"n must be 1 (one completion per request), got {body.n}", "n")
        prompt = body.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise _bad(f"prompt must be one string (a list of exactly one), got a list of "
                           f"{len(prompt)}", "prompt")  # fmt: skip
            prompt = prompt[0]
        max_tokens = body.max_tokens if body.max_tokens is not None else self.limits.max_tokens
        if not 1 <= max_tokens <= self.limits.max_tokens:
            cap = self.limits.max_tokens
            raise _bad(f"max_tokens must be between 1 and {cap}, got {max_tokens}", "max_tokens")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stop) > 4 or any(not s for s in stop):
            raise _bad("stop must be up to 4 non-empty strings", "stop")
        ids = await _tokens(self.tokenizer, prompt, self.limits.max_input_tokens, "prompt")
        if self.context and len(ids) + max_tokens > self.context:
            raise _bad(f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceeds the "
                       f"model's context of {self.context} tokens", "max_tokens")  # fmt: skip
        events, deliver = _channel()
        job = GenerateJob(body.model, deliver, time.monotonic() + self.limits.timeout, ids=ids,
                          text=prompt, max_tokens=max_tokens, temperature=body.temperature,
                          top_p=body.top_p, seed=body.seed, stop=stop)  # fmt: skip
        self.submit(job)
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": int(time.time()), "model": body.model}  # fmt: skip
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(_stream(job, events, head, usage, self.limits.timeout),
                                     media_type="text/event-stream")  # fmt: skip
        parts: list[str] = []
        while True:
            event = await _next(job, events, self.limits.timeout)
            if event[0] == "delta":
                parts.append(event[1])
            elif event[0] == "done":
                choice = {"text": "".join(parts), "index": 0, "logprobs": None,
                          "finish_reason": event[1]}  # fmt: skip
                return head | {"choices": [choice], "usage": _usage(event[2])}
            else:
                raise ApiError(event[1])

    async def classify(self, body: ClassifyRequest) -> dict[str, Any]:
        await self.known(body.model)
        served = self.store.prompts.get(body.model)
        if served is None or served.objective is None:
            raise _bad(f"{body.model!r} has no classification task (template and verbalizer); "
                       "use a prompt trained with the classify objective", "model",
                       "not_a_classifier")  # fmt: skip
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not 1 <= len(texts) <= self.limits.max_inputs:
            raise _bad(f"input must hold 1 to {self.limits.max_inputs} texts, got {len(texts)}",
                       "input")  # fmt: skip
        counts = [len(await _tokens(self.tokenizer, t, self.limits.max_input_tokens, "input"))
                  for t in texts]  # fmt: skip
        events, deliver = _channel()
        job = ClassifyJob(body.model, deliver, time.monotonic() + self.limits.timeout, texts=texts)
        self.submit(job)
        event = await _next(job, events, self.limits.timeout)
        if event[0] != "result":
            raise ApiError(event[1])
        data = [{"index": i, **r} for i, r in enumerate(event[1])]
        usage = {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}
        return {"object": "list", "model": body.model, "data": data, "usage": usage}

    async def list_prompts(self) -> dict[str, Any]:
        data = [s.describe() for _, s in sorted(self.store.prompts.items())]
        return {"object": "list", "data": data, "refused": self.store.refused}

    async def inspect_prompt(self, name: str) -> dict[str, Any]:
        served = self.store.prompts.get(name)
        if served is None:
            raise ApiError(Failure(404, f"no prompt {name!r}", "name", "prompt_not_found"))
        return served.describe()

    async def upload_prompt(self, name: str, request: Request) -> JSONResponse:
        try:
            check_name(name)
        except ValueError as err:
            raise _bad(str(err), "name", "invalid_name") from None
        archive = await request.body()
        if not archive:
            raise _bad("the body is empty: send a tar archive of the artifact's files", "body")
        existed = name in self.store.prompts
        try:
            served = await run_in_threadpool(self.store.stage, name, archive)
        except (ArtifactError, ValueError) as err:
            raise _bad(f"the artifact was refused: {err}", "body", "invalid_artifact") from None
        await run_in_threadpool(self.engine.install, served)
        return JSONResponse(served.describe(), status_code=200 if existed else 201)

    async def delete_prompt(self, name: str) -> dict[str, Any]:
        if name not in self.store.prompts:
            raise ApiError(Failure(404, f"no prompt {name!r}", "name", "prompt_not_found"))
        await run_in_threadpool(self.engine.uninstall, name)
        return {"id": name, "object": "prompt", "deleted": True}


def create_app(
    store: PromptStore, engine: Engine, metrics: ServeMetrics, limits: Limits
) -> FastAPI:
    """The ASGI app serving ``store``'s prompts through ``engine``."""
    app = FastAPI(title="lrpt serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, limits=limits, metrics=metrics)
    app.state.engine = engine
    routes = Routes(store, engine, metrics, limits)
    user = Depends(routes.auth(admin=False))
    admin = Depends(routes.auth(admin=True))

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        body = error_body(err.failure)
        return JSONResponse(body, status_code=err.failure.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(_validation_failure(err)), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        failure = Failure(err.status_code, str(err.detail), None, None)
        return JSONResponse(error_body(failure), status_code=err.status_code)

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


# ---------------------------------------------------------------------- middleware
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Guard:
    """ASGI middleware: refuses bodies over the size limit (413, before the app reads them:
    by ``Content-Length``, or by counting a chunked body) and records each request's status
    and latency (to its last byte, streams included)."""

    def __init__(self, app: Any, limits: Limits, metrics: ServeMetrics) -> None:
        self.app = app
        self.limits = limits
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                route = scope.get("route")
                endpoint = getattr(route, "path", "other")
                self.metrics.requests.labels(endpoint, str(status)).inc()
                self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

        upload = scope["method"] == "PUT"
        limit = self.limits.max_upload_bytes if upload else self.limits.max_body_bytes
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > limit:
                await _too_large(record, limit)
                return
            await self.app(scope, receive, record)
            return
        body, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body.append(message.get("body", b""))
            size += len(body[-1])
            if size > limit:
                await _too_large(record, limit)
                return
            more = message.get("more_body", False)
        whole, replayed = b"".join(body), False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": whole, "more_body": False}

        await self.app(scope, replay, record)


async def _too_large(send: Send, limit: int) -> None:
    failure = Failure(413, f"the body is larger than the limit of {limit} bytes", "body",
                      "body_too_large")  # fmt: skip
    data = json.dumps(error_body(failure)).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": data})


# ---------------------------------------------------------------------- helpers
def _validation_failure(err: RequestValidationError) -> Failure:
    """The first validation error as one message naming its field."""
    first = err.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return Failure(400, f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}",
                       None, "invalid_json")  # fmt: skip
    field = loc[0] if loc else None
    where = ".".join(loc) if loc else "the body"
    if first.get("type") == "missing":
        return Failure(400, f"{where} is required", field, "missing_field")
    if first.get("type") == "extra_forbidden":
        return Failure(400, f"{where} is not a field lrpt serve takes", field, "unknown_field")
    got = first.get("input")
    shown = json.dumps(got)[:80] if _jsonable(got) else type(got).__name__
    return Failure(400, f"{where}: {first.get('msg', 'invalid')} (got {shown})", field,
                   "invalid_type")  # fmt: skip


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


async def _tokens(tokenizer: Any, text: str, limit: int, param: str) -> list[int]:
    if not text.strip():
        raise _bad(f"{param} is empty", param, "empty_input")
    if len(text) > limit * 64:  # far over the limit whatever the tokenizer: no need to count
        raise _bad(f"{param} is longer than {limit} tokens", param, "input_too_long")
    ids = await run_in_threadpool(lambda: list(tokenizer(text)["input_ids"]))
    if len(ids) > limit:
        raise _bad(f"{param} has {len(ids)} tokens; the limit is {limit}", param,
                   "input_too_long")  # fmt: skip
    return ids


def _channel() -> tuple[asyncio.Queue[tuple[Any, ...]], Callable[[tuple[Any, ...]], None]]:
    """A queue the model thread delivers a request's events into."""
    events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def deliver(event: tuple[Any, ...]) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    return events, deliver


async def _next(
    job: Job, events: asyncio.Queue[tuple[Any, ...]], timeout: float
) -> tuple[Any, ...]:
    try:
        return await asyncio.wait_for(
            events.get(), timeout=max(job.deadline - time.monotonic(), 0) + 1
        )
    except TimeoutError:
        job.cancelled = True
        raise ApiError(Failure(504, "the request ran past its timeout", None, "timeout")) from None


def _usage(counts: dict[str, int]) -> dict[str, int]:
    return counts | {"total_tokens": counts["prompt_tokens"] + counts["completion_tokens"]}


async def _stream(
    job: GenerateJob,
    events: asyncio.Queue[tuple[Any, ...]],
    head: dict[str, Any],
    include_usage: bool,
    timeout: float,
) -> AsyncIterator[str]:
    """Server-sent events in the OpenAI chunk format, ending with ``data: [DONE]``."""

    def chunk(text: str, reason: str | None) -> str:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": reason}
        return f"data: {json.dumps(head | {'choices': [choice]})}\n\n"

    try:
        while True:
            try:
                event = await _next(job, events, timeout)
            except ApiError as err:
                event = ("error", err.failure)
            if event[0] == "delta":
                yield chunk(event[1], None)
            elif event[0] == "done":
                yield chunk("", event[1])
                if include_usage:
                    last = head | {"choices": [], "usage": _usage(event[2])}
                    yield f"data: {json.dumps(last)}\n\n"
                break
            else:
                yield f"data: {json.dumps(error_body(event[1]))}\n\n"
                break
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled = True  # a client that went away stops its row
