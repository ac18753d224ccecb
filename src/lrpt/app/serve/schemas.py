"""The request bodies of ``lrpt serve``'s endpoints, as typed pydantic models.

FastAPI validates each body against its model before a route runs: a wrong type, a missing or
an unknown field is refused by name (see :func:`lrpt.app.serve.httperrors.validation_error`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


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
