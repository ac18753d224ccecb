"""Evaluation metrics from scikit-learn and scipy: accuracy, F1, Matthews, Pearson, Spearman.

The one list of metric names: :data:`METRICS` (what a task may select its best checkpoint on),
:data:`CLASSIFICATION` and :data:`REGRESSION` (what each kind of task reports).

Classification predictions and golds are label indices (``-1`` marks a prediction that matched no
label, e.g. an unparseable generation: it counts as wrong). Regression ones are floats.

``f1`` is the GLUE convention: binary F1 of the last label (``"1"``, ``"positive"``) on two-label
tasks, macro F1 otherwise; ``macro_f1`` is always reported too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from lrpt.methods.base import check_choice

CLASSIFICATION = ("accuracy", "f1", "macro_f1", "matthews")  # reported for classification
REGRESSION = ("pearson", "spearman")  # reported for regression
METRICS = ("accuracy", "matthews", "f1", "pearson")  # a task's metric (--metric)


def check_metric(metric: str) -> None:
    """Raise ``ValueError`` naming ``metric`` unless it is one of :data:`METRICS`."""
    check_choice("metric", metric, METRICS)


def is_regression(metric: str) -> bool:
    """Whether the task metric ``metric`` is a correlation over real-valued labels."""
    return metric in REGRESSION


def classification_metrics(
    preds: Sequence[int], golds: Sequence[int], num_labels: int
) -> dict[str, float]:
    """accuracy, f1, macro_f1 and matthews of label indices (``-1`` = no label)."""
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} gold labels")
    if not golds:
        raise ValueError("cannot compute metrics on zero examples")
    labels = list(range(num_labels))
    macro = f1_score(golds, preds, labels=labels, average="macro", zero_division=0)
    if num_labels == 2:
        f1 = f1_score(golds, preds, labels=[1], average="macro", zero_division=0)
    else:
        f1 = macro
    values = (accuracy_score(golds, preds), f1, macro, _matthews(golds, preds))
    return {name: float(value) for name, value in zip(CLASSIFICATION, values, strict=True)}


def _matthews(golds: Sequence[int], preds: Sequence[int]) -> float:
    """Matthews correlation; 0.0 when undefined (one class only), without sklearn's warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(matthews_corrcoef(golds, preds))


def regression_metrics(preds: Sequence[float], golds: Sequence[float]) -> dict[str, float]:
    """pearson and spearman correlations (0.0 where undefined, e.g. constant predictions)."""
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} gold values")
    if len(golds) < 2:
        raise ValueError(f"correlations need at least 2 examples, got {len(golds)}")
    out = {}
    for name, fn in zip(REGRESSION, (pearsonr, spearmanr), strict=True):
        if len(set(preds)) < 2 or len(set(golds)) < 2:
            out[name] = 0.0  # a constant input has no correlation
            continue
        value = float(fn(preds, golds)[0])
        out[name] = 0.0 if math.isnan(value) else value
    return out
