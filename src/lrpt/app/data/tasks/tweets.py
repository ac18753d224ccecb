"""``tweets``: tweet sentiment, the tweets of the vaderSentiment 3.3.2 sdist.

The label is the sign of the mean human rating; the 4 tweets rated exactly 0 are dropped (4,196
of 4,200 rows, by id). HTML entities are unescaped. Test ⌊20 %⌋ (839), validation ⌊10 %⌋ (419),
training 2,938.
"""

from __future__ import annotations

import html

from lrpt.app.data.examples import Example
from lrpt.app.data.tasks import vader
from lrpt.app.data.tasks.base import Task, percent


def rows() -> list[Example]:
    """Every tweet with a non-zero rating, by id, labelled by the rating's sign."""
    return [
        Example(html.unescape(text), "positive" if rating > 0 else "negative")
        for _, rating, text in vader.vader_rows(vader.TWEETS)
        if rating != 0
    ]


TASK = Task(
    name="tweets",
    description="tweet sentiment (sign of the human rating), 2 labels, 4,196 rows",
    labels=("negative", "positive"),
    template="Tweet: {text}\nSentiment:",
    rows=rows,
    held_out=percent(validation=10, test=20),
    available=lambda: vader.available(vader.TWEETS),
)
