"""ASGI middleware of ``lrpt serve``: body-size limits before the app reads a body, and
per-request metrics (status and latency to the last byte, streams included)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lrpt.app.serve.config import ServeConfig
from lrpt.app.serve.errors import TooLarge
from lrpt.app.serve.httperrors import error_body
from lrpt.app.serve.metrics import ServeMetrics

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Guard:
    """ASGI middleware: refuses bodies over the size limit (413, before the app reads them:
    by ``Content-Length``, or by counting a chunked body) and records each request's status
    and latency (to its last byte, streams included)."""

    def __init__(self, app: Any, config: ServeConfig, metrics: ServeMetrics) -> None:
        self.app = app
        self.config = config
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
        limit = self.config.max_upload_bytes if upload else self.config.max_body_bytes
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
    data = json.dumps(error_body(TooLarge(f"the body is larger than the limit of {limit} bytes",
                                          "body"))).encode()  # fmt: skip
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": data})
