"""OpenAI's answer shapes built from an engine's events: a choice's text, its tokens'
log-probabilities (completions' and chat's shapes) and its finish, whole or as stream chunks.

A token's text is what it adds to the text before it (decoded in context, so a word-initial
space shows); special tokens (BOS…) show by name but add nothing to the choice's text, so
``text_offset`` is each token's offset in the choice's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lrpt.app.serve.jobs import Delta, Done, Event, Scored, TokenLogprob

WINDOW = 4  # tokens of context a token's text is decoded in


class Pieces:
    """Token texts as they read after their context."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.special = set(tokenizer.all_special_ids)

    def piece(self, context: Sequence[int], token: int) -> str:
        window = list(context[-WINDOW:])
        before = self.tokenizer.decode(window, skip_special_tokens=False)
        after = self.tokenizer.decode([*window, token], skip_special_tokens=False)
        if after.startswith(before):
            return str(after[len(before) :])
        return str(self.tokenizer.decode([token], skip_special_tokens=False))


@dataclass
class Choice:
    """One row of a request as its events come: ``echo`` text first, then the completion."""

    pieces: Pieces
    index: int
    context: list[int]  # the tokens the next token's text is read after
    echo: str = ""  # the prompt's text, shown before the completion (completions' echo)
    parts: list[str] = field(default_factory=list)
    tokens: list[dict[str, Any]] = field(default_factory=list)  # rendered log-probabilities
    offset: int = 0  # the next token's offset in the choice's text
    done: Done | None = None

    def add(self, event: Event, shape: str) -> tuple[str, list[dict[str, Any]]]:
        """Take ``event``; → the text and the tokens (in ``shape``: ``completion`` or
        ``chat``) it adds."""
        if isinstance(event, Done):
            self.done = event
            return "", []
        if isinstance(event, Scored):  # the prompt's own tokens: read from the start
            self.context, prompt = [], self.context
            rendered = self.render(event.tokens, shape)
            self.context = prompt
            return "", rendered
        if isinstance(event, Delta):
            self.parts.append(event.text)
            return event.text, self.render(event.tokens, shape)
        raise TypeError(f"unexpected event {event!r}")

    def render(self, tokens: Sequence[TokenLogprob], shape: str) -> list[dict[str, Any]]:
        out = []
        for t in tokens:
            text = self.pieces.piece(self.context, t.token)
            top = None if t.top is None else [(self.pieces.piece(self.context, a), lp)
                                              for a, lp in t.top]  # fmt: skip
            if shape == "chat":
                out.append(_chat_token(text, t.logprob, top))
            else:
                out.append({"token": text, "logprob": t.logprob, "offset": self.offset,
                            "top": None if top is None else _first(top)})  # fmt: skip
            self.offset += 0 if t.token in self.pieces.special else len(text)
            self.context.append(t.token)
        self.tokens += out
        return out

    @property
    def text(self) -> str:
        return self.echo + "".join(self.parts)


def completion_logprobs(tokens: list[dict[str, Any]]) -> dict[str, Any]:
    """Rendered tokens in the completions API's shape."""
    return {
        "tokens": [t["token"] for t in tokens],
        "token_logprobs": [t["logprob"] for t in tokens],
        "top_logprobs": [t["top"] for t in tokens],
        "text_offset": [t["offset"] for t in tokens],
    }


def _first(pairs: list[tuple[str, float]]) -> dict[str, float]:
    """``pairs`` as a dict (the completions shape); of tokens that read the same (e.g. bytes of
    an unfinished character), the first, most likely one."""
    out: dict[str, float] = {}
    for text, value in pairs:
        out.setdefault(text, value)
    return out


def _chat_token(text: str, logprob: float | None, top: list[tuple[str, float]] | None) -> Any:
    def one(token: str, value: float | None) -> dict[str, Any]:
        return {"token": token, "logprob": value, "bytes": list(token.encode("utf-8"))}

    return one(text, logprob) | {"top_logprobs": [one(a, lp) for a, lp in top or []]}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip
