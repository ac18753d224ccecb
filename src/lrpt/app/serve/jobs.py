"""What the HTTP layer hands an engine (jobs) and what comes back (events), as typed values.

A job carries the prompt it runs, as the store resolved it when the request came (so the
engine never looks a name up), a ``deliver`` callback the engine calls from its thread with
each :data:`Event`, and a deadline. A classification ends with one :class:`Labels` (or
:class:`Failed`); a generation sends :class:`Delta` pieces of text and ends with :class:`Done`
(or :class:`Failed`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lrpt.app.serve.errors import ServeError

if TYPE_CHECKING:
    from lrpt.app.data.tasks import ClassifyObjective
    from lrpt.app.serve.store import Served


# ---------------------------------------------------------------------- events
@dataclass(frozen=True)
class Delta:
    """New text of a completion."""

    text: str


@dataclass(frozen=True)
class Done:
    """A completion finished: why (``stop``: EOS or a stop string; ``length``: ``max_tokens``),
    and the token counts."""

    reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Labels:
    """A classification's answer: per text, the label and each label's score and probability."""

    results: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Failed:
    """The request failed; nothing more comes."""

    error: ServeError


Event = Delta | Done | Labels | Failed
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
    reproducible whatever else is in the batch)."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass(eq=False, kw_only=True)
class GenerateJob(Job):
    """Continue the token ids ``ids``."""

    ids: list[int]
    text: str = ""  # the prompt as text (what an instance-dependent prompt reads)
    max_tokens: int = 16
    sampling: Sampling = field(default_factory=Sampling)
    stop: list[str] = field(default_factory=list)
