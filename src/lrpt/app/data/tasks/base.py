"""What a built-in task declares (:class:`Task`), and the helpers its module may use.

A task module builds one :class:`Task`: its name, a one-line description, its label names, its
template, a function giving its rows (:class:`~lrpt.app.data.examples.Example`, in a fixed source
order), its split sizes (:func:`fixed` or :func:`percent`) and a function saying, without loading
anything, whether its data is installed. :meth:`Task.load` shuffles the rows with seed 42 and
holds out the test set first, then the validation set (:func:`~lrpt.app.data.examples.split_rows`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lrpt.app.data.examples import Example, TaskData, check_template, split_rows
from lrpt.app.data.metrics import check_metric
from lrpt.pretrained import cache_dir

HeldOut = Callable[[int], tuple[int, int]]  # number of rows → (validation, test) sizes


@dataclass(frozen=True)
class Task:
    """A built-in task; checked on construction (``ValueError`` naming the task and field).

    ``rows``: every example, in a fixed source order (a ``ValueError`` saying how to install
    the data when it is missing). ``held_out``: the validation and test sizes for a number of
    rows. ``available``: whether the data is installed, without loading it. ``verbalizer``: the
    answer word of each label (empty: each label is its own word).
    """

    name: str
    description: str
    labels: tuple[str, ...]
    template: str
    rows: Callable[[], list[Example]]
    held_out: HeldOut
    available: Callable[[], bool]
    metric: str = "accuracy"
    verbalizer: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a task's name must be a non-empty string, got {self.name!r}")
        where = f"task {self.name!r}"
        if not self.labels:
            raise ValueError(f"{where} has no labels")
        if not isinstance(self.labels, tuple) or len(set(self.labels)) != len(self.labels):
            raise ValueError(
                f"{where}: labels must be a tuple of distinct names, got {self.labels!r}"
            )
        try:
            check_metric(self.metric)
            check_template(self.template)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        for name in ("rows", "held_out", "available"):
            if not callable(getattr(self, name)):
                raise ValueError(f"{where}: {name} must be a function")
        missing = [label for label in self.labels if label not in self.verbalizer]
        if self.verbalizer and missing:
            raise ValueError(f"{where}: verbalizer has no word for labels {missing}")

    def load(self) -> TaskData:
        """The task's rows with its fixed seeded splits."""
        rows = self.rows()
        unknown = sorted({row.label for row in rows} - set(self.labels))
        if unknown:
            raise ValueError(
                f"task {self.name!r}: rows labelled {unknown}, not one of its labels "
                f"({', '.join(self.labels)})"
            )
        n_val, n_test = self.held_out(len(rows))
        train, validation, test = split_rows(rows, n_val, n_test)
        return TaskData(
            self.name, train, validation, test, list(self.labels), self.metric, self.template,
            dict(self.verbalizer),
        )  # fmt: skip


def fixed(validation: int, test: int) -> HeldOut:
    """Split sizes: ``validation`` and ``test`` rows, whatever the number of rows."""

    def sizes(n: int) -> tuple[int, int]:
        return validation, test

    return sizes


def percent(validation: int, test: int) -> HeldOut:
    """Split sizes: ⌊``validation`` %⌋ and ⌊``test`` %⌋ of the rows (integer arithmetic)."""

    def sizes(n: int) -> tuple[int, int]:
        return n * validation // 100, n * test // 100

    return sizes


def data_dir() -> Path:
    """Where downloaded data lives: ``$LRPT_DATA_DIR`` if set, else ``cache_dir()/data``."""
    env = os.environ.get("LRPT_DATA_DIR")
    return Path(env).expanduser() if env else cache_dir() / "data"


def decode(raw: bytes) -> str:
    """A data file's text: UTF-8, falling back to latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
