"""Metrics: pinned values on small hand-checked examples."""

from __future__ import annotations

import math

import pytest

from lrpt.app.data.metrics import classification_metrics, is_regression, regression_metrics


def test_binary_metrics_pinned() -> None:
    # TP=1 TN=2 FP=1 FN=0 (positive = label 1)
    m = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], num_labels=2)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(2 / 3)  # binary F1 of the last label
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["matthews"] == pytest.approx(2 / math.sqrt(12))


def test_multiclass_f1_is_macro_and_unmatched_counts_wrong() -> None:
    m = classification_metrics([0, 1, 2, -1], [0, 1, 2, 2], num_labels=3)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["f1"] == m["macro_f1"]
    assert m["macro_f1"] == pytest.approx((1 + 1 + 2 / 3) / 3)


def test_regression_metrics() -> None:
    m = regression_metrics([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.5])
    assert m["spearman"] == pytest.approx(1.0)
    # Σ(x−x̄)(y−ȳ) = 10.75, Σ(x−x̄)² = 5, Σ(y−ȳ)² = 23.1875
    assert m["pearson"] == pytest.approx(10.75 / math.sqrt(5 * 23.1875), abs=1e-12)
    assert regression_metrics([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == {"pearson": 0.0, "spearman": 0.0}
    assert is_regression("pearson") and not is_regression("accuracy")


def test_metric_errors() -> None:
    with pytest.raises(ValueError, match="2 predictions for 3"):
        classification_metrics([0, 1], [0, 1, 1], num_labels=2)
    with pytest.raises(ValueError, match="zero examples"):
        classification_metrics([], [], num_labels=2)
    with pytest.raises(ValueError, match="at least 2"):
        regression_metrics([1.0], [1.0])
