"""The HTTP layer of ``lrpt serve``: FastAPI routes in the OpenAI API's conventions.

FastAPI validates each request body against its model (:mod:`~lrpt.app.serve.schemas`) and
uvicorn is a production ASGI server (HTTP/1.1 keep-alive, graceful shutdown that waits for
in-flight requests). A route resolves the request's prompt through the store, hands the engine
jobs and turns the engine's events into a response (the generation endpoints:
:mod:`~lrpt.app.serve.completions`); errors are :class:`~lrpt.app.serve.errors.ServeError`
kinds, answered in OpenAI's shape by :mod:`~lrpt.app.serve.httperrors` (the one place they
become status codes).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from lrpt.app.serve.common import Channel, Context
from lrpt.app.serve.completions import Generation
from lrpt.app.serve.config import MAX_INPUTS, ServeConfig
from lrpt.app.serve.errors import Forbidden, Invalid, ServeError, Unauthorized
from lrpt.app.serve.guard import Guard
from lrpt.app.serve.httperrors import body, error_response, validation_error
from lrpt.app.serve.jobs import ClassifyJob, Labels, ServingEngine
from lrpt.app.serve.metrics import ServeMetrics
from lrpt.app.serve.schemas import ClassifyRequest
from lrpt.app.serve.store import check_name
from lrpt.artifact import ArtifactError


class Routes(Context):
    """The endpoints besides generation (:class:`~lrpt.app.serve.completions.Generation`):
    health, metrics, models, classification and prompt management."""

    def __init__(self, engine: ServingEngine, metrics: ServeMetrics, config: ServeConfig) -> None:
        super().__init__(engine, config)
        self.metrics = metrics

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

    async def classify(self, request: ClassifyRequest) -> dict[str, Any]:
        await self.resolve(request.model)
        self.require({"classify": True})
        served, objective = self.store.classifier(request.model)
        texts = [request.input] if isinstance(request.input, str) else request.input
        if not 1 <= len(texts) <= MAX_INPUTS:
            raise Invalid(f"input must hold 1 to {MAX_INPUTS} texts, got {len(texts)}", "input")
        counts = [len(await self.tokens(t, "input")) for t in texts]
        channel = Channel()
        channel.jobs.append(ClassifyJob(served=served, objective=objective,
                                        deliver=channel.deliver(0), deadline=self.deadline(),
                                        texts=texts))  # fmt: skip
        self.engine.submit(*channel.jobs)
        labels = [event async for _, event in channel.events(lambda _: True)]
        assert isinstance(labels[0], Labels)  # what ends a classification without an error
        data = [{"index": i, **r} for i, r in enumerate(labels[0].results)]
        usage = {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}
        return {"object": "list", "model": request.model, "data": data, "usage": usage}

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


def create_app(engine: ServingEngine, metrics: ServeMetrics, config: ServeConfig) -> FastAPI:
    """The ASGI app serving ``engine``'s store of prompts."""
    app = FastAPI(title="lrpt serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, config=config, metrics=metrics)
    app.state.engine = engine
    routes = Routes(engine, metrics, config)
    generation = Generation(engine, config)
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
    app.post("/v1/completions", dependencies=[user])(generation.completions)
    app.post("/v1/chat/completions", dependencies=[user])(generation.chat)
    for prefix in ("", "/v1"):  # vLLM's and llama.cpp's path, and the OpenAI clients' base
        app.post(f"{prefix}/tokenize", dependencies=[user])(generation.tokenize)
        app.post(f"{prefix}/detokenize", dependencies=[user])(generation.detokenize)
    app.post("/v1/classify", dependencies=[user])(routes.classify)
    app.get("/v1/prompts", dependencies=[user])(routes.list_prompts)
    app.get("/v1/prompts/{name}", dependencies=[user])(routes.inspect_prompt)
    app.put("/v1/prompts/{name}", dependencies=[admin])(routes.upload_prompt)
    app.delete("/v1/prompts/{name}", dependencies=[admin])(routes.delete_prompt)
    return app
