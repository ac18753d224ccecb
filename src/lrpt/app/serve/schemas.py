"""The request bodies of ``lrpt serve``'s endpoints, as typed pydantic models.

FastAPI validates each body against its model before a route runs: a wrong type, a value out
of range, a missing or an unknown field is refused by name (see
:func:`lrpt.app.serve.httperrors.validation_error`). Fields lrpt does not implement are not
accepted, so they are refused rather than ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

TopK = Annotated[int, Field(ge=0, le=20)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
Bias = Annotated[float, Field(ge=-100, le=100)]
Count = Annotated[int, Field(ge=1)]
Tokens = Annotated[int, Field(ge=0)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _Sampling(_Body):
    """The fields completions and chat completions share."""

    model: str
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    n: Count = 1
    stream: bool = False
    stream_options: dict[str, bool] | None = None  # include_usage: a usage chunk last
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, Bias] | None = None  # token id (as a string) → bias
    user: str | None = None


class CompletionRequest(_Sampling):
    """``POST /v1/completions``: ``prompt`` is a text, a list of texts, a list of token ids or
    a list of such lists (one choice per prompt and ``n``, in order)."""

    prompt: str | list[str] | list[Tokens] | list[list[Tokens]]
    max_tokens: Tokens | None = 16
    best_of: Count | None = None
    echo: bool = False
    logprobs: TopK | None = None
    suffix: None = None


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``: ``messages`` rendered with the chat template."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Tokens | None = None
    max_completion_tokens: Tokens | None = None
    logprobs: bool = False
    top_logprobs: TopK | None = None


class ClassifyRequest(_Body):
    """``POST /v1/classify``: ``input`` is one text or a list of texts."""

    model: str
    input: str | list[str]


class TokenizeRequest(_Body):
    """``POST /tokenize``: a ``prompt``, or chat ``messages`` rendered with the template."""

    model: str | None = None
    prompt: str | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | None = None
    add_special_tokens: bool | None = None  # default: True for a prompt, False for messages
    add_generation_prompt: bool = True
    return_token_strs: bool = False


class DetokenizeRequest(_Body):
    """``POST /detokenize``: token ids back to text."""

    model: str | None = None
    tokens: list[Tokens]
