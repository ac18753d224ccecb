"""What every route of ``lrpt serve`` needs: the prompt a request names, its input as tokens
within the limits, the engine's features, and the channel a request's events come back by."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence

from starlette.concurrency import run_in_threadpool

from lrpt.app.serve.config import ServeConfig
from lrpt.app.serve.errors import Invalid, TimedOut, UnknownModel, Unsupported
from lrpt.app.serve.jobs import Event, Failed, Job, ServingEngine
from lrpt.app.serve.store import Served


class Context:
    """One engine (and its store) and the server's config, as the routes use them."""

    def __init__(self, engine: ServingEngine, config: ServeConfig) -> None:
        self.engine = engine
        self.store = engine.store
        self.config = config
        self.tokenizer = self.store.tokenizer
        model = self.store.model
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        rows = int(model.get_input_embeddings().weight.shape[0])
        self.vocab = min(rows, len(self.tokenizer))  # token ids the model and tokenizer share

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

    def require(self, used: dict[str, bool]) -> None:
        """Refuse, by name, a field the request uses that the engine does not implement."""
        for feature, is_used in used.items():
            if is_used and feature not in self.engine.supports:
                raise Unsupported(f"{feature} is not supported by the {self.engine.name} "
                                  "engine", feature)  # fmt: skip

    def deadline(self) -> float:
        return time.monotonic() + self.config.timeout

    async def tokens(
        self, text: str, param: str, special: bool = True, where: str | None = None
    ) -> list[int]:
        """``text``'s token ids (``special``: with the tokenizer's special tokens), refusing an
        empty text or one over ``--max-input-tokens`` (``where``: as in :meth:`check_ids`)."""
        limit, where = self.config.max_input_tokens, where or param
        if not text.strip():
            raise Invalid(f"{where} is empty", param, "empty_input")
        if len(text) > limit * 64:  # far over the limit whatever the tokenizer: no need to count
            raise Invalid(f"{where} is longer than {limit} tokens", param, "input_too_long")
        tokenizer = self.tokenizer
        ids = await run_in_threadpool(
            lambda: list(tokenizer(text, add_special_tokens=special)["input_ids"])
        )
        return self.check_ids(ids, param, where)

    def check_ids(self, ids: Sequence[int], param: str, where: str | None = None) -> list[int]:
        """``ids`` if they are 1 to ``--max-input-tokens`` token ids of the vocabulary
        (``where``: which part of field ``param`` they are, for the message)."""
        limit, where = self.config.max_input_tokens, where or param
        if not ids:
            raise Invalid(f"{where} is empty", param, "empty_input")
        if len(ids) > limit:
            raise Invalid(f"{where} has {len(ids)} tokens; the limit is {limit}", param,
                          "input_too_long")  # fmt: skip
        bad = next((t for t in ids if not 0 <= t < self.vocab), None)
        if bad is not None:
            raise Invalid(f"{where} holds token id {bad}, outside the vocabulary (0 to "
                          f"{self.vocab - 1})", param)  # fmt: skip
        return list(ids)

    def max_tokens(self, asked: int | None, param: str = "max_tokens") -> int:
        """``asked`` (None: ``--max-tokens``) if it is within ``--max-tokens``."""
        cap = self.config.max_tokens
        value = asked if asked is not None else cap
        if not 0 <= value <= cap:
            raise Invalid(f"{param} must be between 0 and {cap}, got {value}", param)
        return value

    def fits(self, ids: list[int], max_tokens: int, what: str, param: str = "max_tokens") -> None:
        """Refuse a prompt (``what``) that, with ``max_tokens`` (field ``param``) more, exceeds
        the model's context."""
        if self.context and len(ids) + max_tokens > self.context:
            raise Invalid(f"{what} ({len(ids)} tokens) + {param} ({max_tokens}) exceeds the "
                          f"model's context of {self.context} tokens", param)  # fmt: skip


def stops(stop: str | list[str] | None) -> list[str]:
    """The stop strings of a request: up to 4, none empty."""
    found = [stop] if isinstance(stop, str) else list(stop or [])
    if len(found) > 4 or any(not s for s in found):
        raise Invalid("stop must be up to 4 non-empty strings", "stop")
    return found


class Channel:
    """The events of a request's jobs, tagged with each job's index, as the model thread
    delivers them; :meth:`events` yields them until every job has ended."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.jobs: list[Job] = []
        self.prompt_tokens = 0  # the request's prompt tokens, each prompt once

    def deliver(self, index: int) -> Callable[[Event], None]:
        """The ``deliver`` callback of job ``index``."""

        def put(event: Event) -> None:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (index, event))

        return put

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancelled = True

    async def next(self, deadline: float) -> tuple[int, Event]:
        """The next event; past ``deadline`` (plus a second for the engine to say so itself)
        every job is cancelled and :class:`TimedOut` raised."""
        try:
            return await asyncio.wait_for(
                self.queue.get(), timeout=max(deadline - time.monotonic(), 0) + 1
            )
        except TimeoutError:
            self.cancel()
            raise TimedOut() from None

    async def events(self, ends: Callable[[Event], bool]) -> AsyncIterator[tuple[int, Event]]:
        """Each ``(job index, event)`` until every job has sent an event that ``ends`` it; a
        :class:`Failed` event raises its error (the other jobs are cancelled)."""
        open_jobs = len(self.jobs)
        deadline = min(job.deadline for job in self.jobs)
        while open_jobs:
            index, event = await self.next(deadline)
            if isinstance(event, Failed):
                self.cancel()
                raise event.error
            yield index, event
            open_jobs -= ends(event)
