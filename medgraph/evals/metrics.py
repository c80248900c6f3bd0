"""Classification metrics of the answer evaluations: accuracy and macro-averaged F1.

A prediction of ``None`` is an invalid reply (the model's output could not be read): it counts as
wrong everywhere and is not a class of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LabelScores:
    """Precision, recall and F1 of one label, with its support (gold count)."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int


def _check_lengths(predictions: Sequence[str | None], golds: Sequence[str]) -> None:
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} gold labels")


def accuracy(predictions: Sequence[str | None], golds: Sequence[str]) -> float:
    """Share of predictions equal to their gold label (0.0 for no items)."""
    _check_lengths(predictions, golds)
    if not golds:
        return 0.0
    return sum(p == g for p, g in zip(predictions, golds, strict=True)) / len(golds)


def per_label_scores(
    predictions: Sequence[str | None], golds: Sequence[str], labels: Sequence[str] | None = None
) -> list[LabelScores]:
    """Precision, recall and F1 for each label.

    ``labels`` defaults to every label seen among the gold labels or the valid predictions, in
    first-seen order. A ratio with a zero denominator is 0.0, as scikit-learn reports it.
    """
    _check_lengths(predictions, golds)
    if labels is None:
        seen = [*golds, *(p for p in predictions if p is not None)]
        labels = list(dict.fromkeys(seen))
    scores: list[LabelScores] = []
    for label in labels:
        true_positive = sum(
            p == label and g == label for p, g in zip(predictions, golds, strict=True)
        )
        predicted = sum(p == label for p in predictions)
        support = sum(g == label for g in golds)
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append(LabelScores(label, precision, recall, f1, support))
    return scores


def macro_f1(
    predictions: Sequence[str | None], golds: Sequence[str], labels: Sequence[str] | None = None
) -> float:
    """Unweighted mean of the per-label F1 scores (PubMedQA's official second metric)."""
    scores = per_label_scores(predictions, golds, labels)
    return sum(s.f1 for s in scores) / len(scores) if scores else 0.0


__all__ = ["LabelScores", "accuracy", "macro_f1", "per_label_scores"]
