"""Reciprocal rank fusion: merge ranked lists from several retrievers into one ranking.

Each item scores ``sum(weight / (k + rank))`` over the lists it appears in (ranks start at 1), as in
Cormack, Clarke and Büttcher, "Reciprocal rank fusion outperforms Condorcet and individual rank
learning methods", SIGIR 2009. Only ranks matter, so scores on different scales (cosine, BM25) fuse
without calibration.

Retrievers rank chunks, but a question is answered by a document: :func:`document_rankings` turns
each chunk ranking into a ranking of documents (a document ranks where its best chunk does) so that
documents, not chunks, are fused. A document whose title chunk leads the lexical list and whose
abstract chunk leads the dense list is then first in both, where fusing chunks would credit each
chunk with only one list. :func:`by_document` lays the chunks out in the fused document order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


def document_rankings(
    rankings: Mapping[str, Sequence[str]], document_of: Callable[[str], str]
) -> dict[str, list[str]]:
    """Each chunk ranking as a ranking of the documents ``document_of`` maps its chunks to."""
    documents: dict[str, list[str]] = {}
    for name, ranking in rankings.items():
        documents[name] = list(dict.fromkeys(document_of(chunk_id) for chunk_id in ranking))
    return documents


def by_document(
    chunks: Sequence[str], document_of: Callable[[str], str], documents: Sequence[str]
) -> list[str]:
    """``chunks`` (best first) laid out for the ranking ``documents``.

    First the best chunk of every document in document order, then every document's second
    chunk, and so on: the first ``n`` chunks come from the ``n`` best documents. Chunks of
    documents that are not ranked are left out.
    """
    place = {document: position for position, document in enumerate(documents)}
    seen: dict[str, int] = {}
    keyed: list[tuple[int, int, str]] = []
    for chunk_id in chunks:
        document = document_of(chunk_id)
        if document not in place:
            continue
        round_number = seen.get(document, 0)
        seen[document] = round_number + 1
        keyed.append((round_number, place[document], chunk_id))
    return [chunk_id for _, _, chunk_id in sorted(keyed)]


__all__ = ["FusedItem", "by_document", "document_rankings", "reciprocal_rank_fusion"]
