"""What the HTTP layer hands an engine (jobs) and what comes back (events), as typed values.

A job carries the prompt it runs, as the store resolved it when the request came (so the
engine never looks a name up), a ``deliver`` callback the engine calls from its thread with
each :data:`Event`, and a deadline. A classification ends with one :class:`Labels` (or
:class:`Failed`); a generation sends :class:`Scored` (the prompt's own tokens, when asked),
:class:`Delta` pieces of text and ends with :class:`Done` (or :class:`Failed`).

An engine says which request fields it implements (:data:`FEATURES`, :class:`ServingEngine`),
so the HTTP layer refuses the others by name, naming the engine, before submitting anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from lrpt.app.serve.errors import ServeError

if TYPE_CHECKING:
    from lrpt.app.data.objectives import ClassifyObjective
    from lrpt.app.serve.store import PromptStore, Served

# request fields (and endpoints) an engine may implement or not
FEATURES = frozenset({
    "chat", "classify", "token_prompts", "n", "best_of", "stop", "seed", "top_p", "echo",
    "logprobs", "frequency_penalty", "presence_penalty", "logit_bias",
})  # fmt: skip


# ---------------------------------------------------------------------- events
@dataclass(frozen=True)
class TokenLogprob:
    """A token of the prompt or the completion with its log-probability under the prompted
    model (None for the prompt's first token, which nothing predicts) and the ``k`` most likely
    tokens at its position with theirs (None where ``logprob`` is)."""

    token: int
    logprob: float | None
    top: tuple[tuple[int, float], ...] | None


@dataclass(frozen=True)
class Delta:
    """New text of a completion, with the tokens whose text starts in it when the job asked
    for log-probabilities."""

    text: str
    tokens: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Scored:
    """The prompt's tokens with their log-probabilities (``echo``), before any :class:`Delta`."""

    tokens: tuple[TokenLogprob, ...]


@dataclass(frozen=True)
class Done:
    """A completion finished: why (``stop``: EOS or a stop string; ``length``: ``max_tokens``),
    the token counts and the summed log-probability of the generated tokens."""

    reason: str
    prompt_tokens: int
    completion_tokens: int
    logprob: float = 0.0


@dataclass(frozen=True)
class Labels:
    """A classification's answer: per text, the label and each label's score and probability."""

    results: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Failed:
    """The request failed; nothing more comes."""

    error: ServeError


Event = Scored | Delta | Done | Labels | Failed
Deliver = Callable[[Event], None]


# ---------------------------------------------------------------------- jobs
@dataclass(eq=False, kw_only=True)
class Job:
    """One request: the prompt it runs (None: the bare base model), where its events go, its
    deadline, whether its client went away."""

    served: Served | None
    deliver: Deliver
    deadline: float
    cancelled: bool = False


@dataclass(eq=False, kw_only=True)
class ClassifyJob(Job):
    """Classify ``texts`` with a prompt that has a classification task."""

    served: Served
    objective: ClassifyObjective
    texts: list[str]


@dataclass(frozen=True)
class Sampling:
    """How a generation chooses its tokens (temperature 0: greedy; a seed makes it
    reproducible whatever else is in the batch). ``frequency_penalty`` and ``presence_penalty``
    lower the logits of the tokens generated so far (per occurrence, and once); ``logit_bias``
    adds to the logits of the tokens it names."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()


@dataclass(eq=False, kw_only=True)
class GenerateJob(Job):
    """Continue the token ids ``ids``."""

    ids: list[int]
    text: str = ""  # the prompt as text (what an instance-dependent prompt reads)
    max_tokens: int = 16  # 0: generate nothing (only score the prompt, with score_prompt)
    sampling: Sampling = field(default_factory=Sampling)
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None  # alternatives per token (0–20); None: no log-probabilities
    score_prompt: bool = False  # deliver the prompt's own tokens scored first (:class:`Scored`)


# ---------------------------------------------------------------------- engines
class ServingEngine(Protocol):
    """What the HTTP layer needs of an engine: its name, the :data:`FEATURES` it implements,
    its store, a queue to submit jobs to, prompts to install and remove, and its load."""

    name: str
    supports: frozenset[str]
    store: PromptStore

    def submit(self, *jobs: Job) -> None:
        """Queue every job, or none (raising :class:`~lrpt.app.serve.errors.Overloaded` or
        :class:`~lrpt.app.serve.errors.Unavailable`)."""

    def install(self, served: Served) -> None: ...

    def uninstall(self, name: str) -> None: ...

    @property
    def queued(self) -> int: ...

    @property
    def decoding(self) -> int: ...
