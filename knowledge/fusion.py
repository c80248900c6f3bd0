"""Reciprocal rank fusion: merge ranked lists from several retrievers into one ranking.

Each item scores ``sum(weight / (k + rank))`` over the lists it appears in (ranks start at 1), as in
Cormack, Clarke and Büttcher, "Reciprocal rank fusion outperforms Condorcet and individual rank
learning methods", SIGIR 2009. Only ranks matter, so scores on different scales (cosine, BM25) fuse
without calibration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FusedItem:
    """One item of a fused ranking with its fused score and its 1-based rank in each input list."""

    item_id: str
    score: float
    ranks: dict[str, int] = field(default_factory=dict)


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]],
    k: int = 60,
    weights: Mapping[str, float] | None = None,
) -> list[FusedItem]:
    """Fuse ``rankings`` (retriever name -> ids, best first) into one list, best first.

    Duplicate ids within one list count once, at their best rank. Ties are broken by the best
    single rank the item reached, then by first appearance (lists in the mapping's order), so the
    result is deterministic.
    """
    if k < 1:
        raise ValueError(f"rank fusion constant k must be at least 1, got {k}")
    weights = weights or {}
    scores: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    first_seen: dict[str, int] = {}
    for name, ranking in rankings.items():
        weight = weights.get(name, 1.0)
        for position, item_id in enumerate(ranking, start=1):
            item_ranks = ranks.setdefault(item_id, {})
            if name in item_ranks:
                continue
            item_ranks[name] = position
            first_seen.setdefault(item_id, len(first_seen))
            scores[item_id] = scores.get(item_id, 0.0) + weight / (k + position)
    ordered = sorted(
        scores,
        key=lambda item_id: (
            -scores[item_id],
            min(ranks[item_id].values()),
            first_seen[item_id],
        ),
    )
    return [FusedItem(item_id, scores[item_id], dict(ranks[item_id])) for item_id in ordered]


__all__ = ["FusedItem", "reciprocal_rank_fusion"]
