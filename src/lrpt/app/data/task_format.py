"""The task format: what a trained prompt depends on besides its tensors (:class:`TaskSpec`).

Label names, metric, template, verbalizer, objective and input length; it is stored with the
prompt so ``lrpt eval`` and ``lrpt predict`` rebuild the exact same inputs. :func:`task_spec`
builds it for a task and a model family, with the command line's overrides; the objectives
(:mod:`~lrpt.app.data.objectives`) turn it into batches, a loss and predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lrpt.app.data.examples import Example, TaskData, check_template
from lrpt.app.data.metrics import classification_metrics, is_regression, regression_metrics
from lrpt.family import Family
from lrpt.methods.base import check_choice

LM_OBJECTIVES = ("classify", "generate")  # a causal or seq2seq LM's (``--objective``)
OBJECTIVES = (*LM_OBJECTIVES, "head")  # "head": an encoder classifier's, its only one
DEFAULT_MAX_INPUT_TOKENS = 256


def check_max_input_tokens(value: int) -> None:
    """Raise ValueError unless ``value`` leaves room for a template and some text (≥ 8)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 8:
        raise ValueError(f"max_input_tokens must be an integer ≥ 8, got {value!r}")


@dataclass(frozen=True)
class TaskSpec:
    """What a trained prompt depends on besides its tensors (JSON-able, stored in the artifact)."""

    name: str
    labels: tuple[str, ...]
    metric: str
    template: str
    verbalizer: dict[str, str] = field(default_factory=dict)
    objective: str = "classify"
    max_input_tokens: int = DEFAULT_MAX_INPUT_TOKENS

    def __post_init__(self) -> None:
        check_choice("objective", self.objective, OBJECTIVES)
        check_max_input_tokens(self.max_input_tokens)
        check_template(self.template)
        missing = [label for label in self.labels if label not in self.verbalizer]
        if missing and not self.regression:
            raise ValueError(f"the verbalizer has no word for label(s) {', '.join(missing)}")

    @property
    def regression(self) -> bool:
        return is_regression(self.metric)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["labels"] = list(self.labels)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**(known | {"labels": tuple(data["labels"])}))

    def gold(self, example: Example) -> int | float:
        """The gold label index (classification) or value (regression) of ``example``."""
        if self.regression:
            try:
                return float(example.label)
            except ValueError:
                raise ValueError(f"label {example.label!r} is not a number") from None
        try:
            return self.labels.index(example.label)
        except ValueError:
            raise ValueError(
                f"label {example.label!r} is not one of the task's labels: {', '.join(self.labels)}"
            ) from None

    def metrics(self, preds: Sequence[Any], golds: Sequence[Any]) -> dict[str, float]:
        """Every metric of this kind of task (the task's own ``metric`` among them)."""
        if self.regression:
            return regression_metrics(preds, golds)
        return classification_metrics(preds, golds, len(self.labels))


def unescape(text: str) -> str:
    r"""``\n`` and ``\t`` typed on a command line → newline and tab."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


def parse_verbalizer(text: str, labels: Sequence[str]) -> dict[str, str]:
    """``'neg=terrible,pos=great'`` → ``{'neg': 'terrible', 'pos': 'great'}`` for ``labels``.

    Every label needs exactly one word; words must be distinct.
    """
    words: dict[str, str] = {}
    for part in text.split(","):
        label, sep, word = part.partition("=")
        label, word = label.strip(), word.strip()
        if not sep or not label or not word:
            raise ValueError(f"bad verbalizer entry {part!r}: expected LABEL=WORD (in {text!r})")
        if label in words:
            raise ValueError(f"verbalizer gives label {label!r} twice")
        words[label] = word
    unknown = sorted(set(words) - set(labels))
    missing = [label for label in labels if label not in words]
    if unknown or missing:
        raise ValueError(
            f"the verbalizer must give one word for each label ({', '.join(labels)}); "
            f"unknown: {unknown or 'none'}, missing: {missing or 'none'}"
        )
    if len(set(words.values())) != len(words):
        raise ValueError(f"verbalizer words must be distinct, got {text!r}")
    return {label: words[label] for label in labels}


def default_objective(family: str, metric: str) -> str:
    """``head`` for encoders; ``generate`` for regression; ``classify`` otherwise."""
    if family == Family.ENCODER:
        return "head"
    return "generate" if is_regression(metric) else "classify"


def task_spec(
    task: TaskData,
    family: str,
    *,
    objective: str | None = None,
    template: str | None = None,
    verbalizer: str | dict[str, str] | None = None,
    max_input_tokens: int = DEFAULT_MAX_INPUT_TOKENS,
) -> TaskSpec:
    """The spec of ``task`` for a model of ``family``, with command-line overrides applied."""
    objective = objective or default_objective(family, task.metric)
    if family == Family.ENCODER and objective != "head":
        raise ValueError(
            f"objective {objective!r} needs a causal or seq2seq LM; encoder classifiers train "
            "their classification head (objective 'head')"
        )
    if family != Family.ENCODER and objective == "head":
        raise ValueError(f"objective 'head' needs an encoder classifier, not a {family} model")
    if objective == "classify" and is_regression(task.metric):
        raise ValueError(
            f"task {task.name!r} is a regression task (metric {task.metric}): "
            "use --objective generate"
        )
    words = dict(task.verbalizer)
    if isinstance(verbalizer, str):
        words = parse_verbalizer(verbalizer, task.labels)
    elif verbalizer is not None:
        words = dict(verbalizer)
    return TaskSpec(
        name=task.name,
        labels=tuple(task.labels),
        metric=task.metric,
        template=unescape(template) if template is not None else task.template,
        verbalizer=words,
        objective=objective,
        max_input_tokens=max_input_tokens,
    )
