"""The errors a request can get from ``lrpt serve``, in the serving layer's own words.

Each class is a kind of failure with its default ``code``; an instance carries the message and
the request field at fault (``param``). The engine and the store raise or deliver them; the
HTTP layer alone decides which status each kind answers (:data:`lrpt.app.serve.api.STATUS`).
"""

from __future__ import annotations

from typing import ClassVar


class ServeError(Exception):
    """A failed request: ``message``, the field at fault (``param``) and a machine ``code``."""

    code: ClassVar[str | None] = None

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code  # type: ignore[misc]  # an instance may name a finer code


class Invalid(ServeError):
    """The request is malformed or asks for what cannot be done."""

    code = "invalid_value"


class Unsupported(Invalid):
    """A field the engine serving the request does not implement."""

    code = "unsupported_field"


class NotAClassifier(Invalid):
    """A classification request for a prompt without a classification task."""

    code = "not_a_classifier"


class UnknownModel(ServeError):
    """``model`` names neither the base model nor a prompt."""

    code = "model_not_found"


class UnknownPrompt(ServeError):
    """Prompt management names a prompt that is not in the store."""

    code = "prompt_not_found"


class Unauthorized(ServeError):
    """A missing or wrong bearer token."""

    code = "invalid_api_key"


class Forbidden(ServeError):
    """An endpoint that is switched off."""

    code = "admin_disabled"


class TooLarge(ServeError):
    """A body over the size limit."""

    code = "body_too_large"


class Overloaded(ServeError):
    """The queue is full: retry later."""

    code = "queue_full"


class Unavailable(ServeError):
    """The server is shutting down."""

    code = "shutting_down"


class TimedOut(ServeError):
    """The request ran past its timeout."""

    code = "timeout"

    def __init__(self) -> None:
        super().__init__("the request ran past its timeout")


class Internal(ServeError):
    """A bug: the model thread failed the iteration that ran the request."""
