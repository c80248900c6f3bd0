"""Accuracy and macro-F1 against cases small enough to count by hand."""

from __future__ import annotations

import pytest

from medgraph.evals.metrics import accuracy, macro_f1, per_label_scores


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def test_accuracy_counts_exact_matches_and_invalid_as_wrong() -> None:
    golds = ["yes", "no", "maybe", "yes"]
    predictions = ["yes", "yes", None, "yes"]
    assert accuracy(predictions, golds) == 2 / 4
    assert accuracy([], []) == 0.0


def test_macro_f1_by_hand() -> None:
    golds = ["yes", "yes", "yes", "no", "no", "maybe"]
    predictions: list[str | None] = ["yes", "yes", "no", "no", "yes", None]
    # yes: predicted 3 times, 2 right; gold 3 times -> P 2/3, R 2/3
    # no: predicted twice, 1 right; gold twice -> P 1/2, R 1/2
    # maybe: never predicted (the invalid reply is no class); gold once -> P 0, R 0
    expected = (_f1(2 / 3, 2 / 3) + _f1(1 / 2, 1 / 2) + 0.0) / 3
    assert macro_f1(predictions, golds) == pytest.approx(expected)
    scores = {s.label: s for s in per_label_scores(predictions, golds)}
    assert list(scores) == ["yes", "no", "maybe"]
    assert (scores["yes"].precision, scores["yes"].recall, scores["yes"].support) == (
        2 / 3,
        2 / 3,
        3,
    )
    assert scores["maybe"].f1 == 0.0


def test_macro_f1_includes_labels_only_predicted() -> None:
    golds = ["yes", "yes"]
    predictions: list[str | None] = ["yes", "maybe"]
    # yes: P 1/1, R 1/2; maybe: predicted once, never gold -> P 0, R 0 (scikit-learn's union)
    expected = (_f1(1.0, 1 / 2) + 0.0) / 2
    assert macro_f1(predictions, golds) == pytest.approx(expected)
    assert macro_f1(predictions, golds, labels=["yes"]) == pytest.approx(_f1(1.0, 1 / 2))


def test_perfect_predictions_score_one() -> None:
    golds = ["yes", "no", "maybe"]
    assert accuracy(golds, golds) == 1.0
    assert macro_f1(list(golds), golds) == 1.0


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1"):
        accuracy(["yes", "no"], ["yes"])
