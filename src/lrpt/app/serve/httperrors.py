"""Errors as HTTP: the one place a kind of :class:`~lrpt.app.serve.errors.ServeError` becomes
a status code, and every error body has OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import json
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from lrpt.app.serve.errors import (
    Forbidden,
    Internal,
    Invalid,
    Overloaded,
    ServeError,
    TimedOut,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnknownModel,
    UnknownPrompt,
)

RETRY_AFTER = "1"  # seconds, for 429 and 503

STATUS: dict[type[ServeError], int] = {
    Invalid: 400,
    Unauthorized: 401,
    Forbidden: 403,
    UnknownModel: 404,
    UnknownPrompt: 404,
    TooLarge: 413,
    Overloaded: 429,
    Internal: 500,
    Unavailable: 503,
    TimedOut: 504,
}
_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
          429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error"}  # fmt: skip


def status_of(err: ServeError) -> int:
    """The HTTP status of ``err``'s kind (500 for a kind not in :data:`STATUS`)."""
    return next((STATUS[c] for c in type(err).__mro__ if c in STATUS), 500)


def body(status: int, message: str, param: str | None, code: str | None) -> dict[str, Any]:
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_body(err: ServeError) -> dict[str, Any]:
    return body(status_of(err), err.message, err.param, err.code)


def error_response(err: ServeError) -> JSONResponse:
    """``err`` as a JSON response, with ``Retry-After`` on 429 and 503 and
    ``WWW-Authenticate`` on 401."""
    status = status_of(err)
    headers = {"Retry-After": RETRY_AFTER} if status in (429, 503) else {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error_body(err), status_code=status, headers=headers)


def validation_error(err: RequestValidationError) -> Invalid:
    """The first validation error as one message naming its field."""
    first = err.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return Invalid(f"the body is not valid JSON: {detail}", None, "invalid_json")
    field = loc[0] if loc else None
    where = ".".join(loc) if loc else "the body"
    if first.get("type") == "missing":
        return Invalid(f"{where} is required", field, "missing_field")
    if first.get("type") == "extra_forbidden":
        return Invalid(f"{where} is not a field lrpt serve takes", field, "unknown_field")
    got = first.get("input")
    shown = json.dumps(got)[:80] if _jsonable(got) else type(got).__name__
    return Invalid(f"{where}: {first.get('msg', 'invalid')} (got {shown})", field, "invalid_type")


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
