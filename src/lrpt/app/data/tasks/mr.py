"""``mr``: movie-review sentiment, the Pang & Lee snippets of the vaderSentiment 3.3.2 sdist.

10,605 rows, by id; ids 1–5,331 are positive, the rest negative. Test 1,000 rows, validation 500,
training 9,105.
"""

from __future__ import annotations

from lrpt.app.data.examples import Example
from lrpt.app.data.tasks import vader
from lrpt.app.data.tasks.base import Task, fixed

POSITIVE_IDS = 5331  # ids 1..5,331 are the positive snippets


def rows() -> list[Example]:
    """Every snippet, by id, labelled by its id."""
    return [
        Example(text, "positive" if i <= POSITIVE_IDS else "negative")
        for i, _, text in vader.vader_rows(vader.MOVIE_REVIEWS)
    ]


TASK = Task(
    name="mr",
    description="movie-review sentiment (Pang & Lee snippets), 2 labels, 10,605 rows",
    labels=("negative", "positive"),
    template="Review: {text}\nSentiment:",
    rows=rows,
    held_out=fixed(validation=500, test=1000),
    available=lambda: vader.available(vader.MOVIE_REVIEWS),
)
