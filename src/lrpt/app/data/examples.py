"""Labelled examples and a task's data: :class:`Example`, :class:`TaskData`, seeded splits.

Every task, built-in (:mod:`lrpt.app.data.tasks`) or from the user's files
(:mod:`lrpt.app.data.user_data`), becomes a :class:`TaskData`: three splits of examples, label
names in a fixed order, a metric, a template and a verbalizer. Rows are split by
:func:`split_rows`: shuffled with ``random.Random(42)`` (:data:`SEED`, independent of the
training seed), the first rows the test set, the next the validation set, the rest training.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lrpt.app.data.metrics import check_metric

SEED = 42


@dataclass(frozen=True)
class Example:
    """One labelled example; ``label`` is a label name ("negative", "0", ...)."""

    text: str
    label: str
    text_pair: str | None = None


@dataclass
class TaskData:
    """A task's three splits, its label names (fixed order), metric, template and verbalizer.

    ``template`` is a format string with ``{text}`` and optionally ``{text_pair}``; the verbalizer
    maps each label to its answer word, scored after the template with a leading space. An empty
    verbalizer means each label is its own word.
    """

    name: str
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    labels: list[str]
    metric: str = "accuracy"
    template: str = "{text}"
    verbalizer: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            check_metric(self.metric)
        except ValueError as err:
            raise ValueError(f"task {self.name!r}: {err}") from None
        if not self.labels:
            raise ValueError(f"task {self.name!r} has no labels")
        if not self.verbalizer:
            self.verbalizer = {label: label for label in self.labels}
        missing = [label for label in self.labels if label not in self.verbalizer]
        if missing:
            raise ValueError(f"task {self.name!r}: verbalizer has no word for labels {missing}")
        check_template(self.template)

    def render(self, example: Example) -> str:
        """The model input of ``example``: the template filled with its text (and pair)."""
        if "{text_pair}" in self.template and example.text_pair is None:
            raise ValueError(f"task {self.name!r}: template needs text_pair, the example has none")
        return self.template.format(text=example.text, text_pair=example.text_pair or "")

    def sizes(self) -> dict[str, int]:
        """Number of examples per split."""
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def check_template(template: str) -> None:
    """Raise ``ValueError`` unless ``template`` uses ``{text}`` and at most ``{text_pair}``."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise ValueError(f"bad template {template!r}: {err}") from None
    unknown = names - {"text", "text_pair"}
    if unknown or "text" not in names:
        raise ValueError(
            f"bad template {template!r}: it must contain {{text}} and may contain {{text_pair}}, "
            f"nothing else (found {sorted(names)})"
        )


def split_rows(rows: Iterable[Any], n_val: int, n_test: int) -> tuple[list, list, list]:
    """Shuffle ``rows`` (in their given order) with seed 42; → (train, validation, test).

    The first ``n_test`` shuffled rows are the test set, the next ``n_val`` the validation set.
    """
    rows = list(rows)
    if n_val + n_test > len(rows):
        raise ValueError(f"cannot hold out {n_val} + {n_test} of {len(rows)} rows")
    random.Random(SEED).shuffle(rows)
    return rows[n_test + n_val :], rows[n_test : n_test + n_val], rows[:n_test]


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Distinct labels, sorted numerically when all are numbers, else as strings."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)
