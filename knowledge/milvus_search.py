"""Search over the Milvus store: dense and BM25 requests run by Milvus, filters as expressions.

Hybrid search fuses the two retrievers' document rankings. ``knowledge.fusion``: ``zscore``
(the default, medgraph's score fusion over both result lists, as on the Chroma store), ``rrf`` or
``weighted`` (Milvus's own ``hybrid_search`` rankers, merged on the server).
Every filter, including the origins rule for uploads, is one Milvus boolean expression evaluated
by the server.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.fusion import best_per_document, by_document, zscore_fusion
from medgraph.knowledge.lexical import tokenize
from medgraph.knowledge.milvus_store import MilvusStore
from medgraph.knowledge.search import QueryEmbedder, Ranked, SearchMode
from medgraph.knowledge.search_filter import SearchFilter
from medgraph.knowledge.store import STATE_COMPLETE, StoredChunk

Hit = tuple[str, str, float]
"""(chunk id, source id, score)."""


class MilvusSearch:
    """Dense, BM25 and hybrid search over a :class:`MilvusStore`."""

    def __init__(
        self, store: MilvusStore, settings: KnowledgeSettings, mutex: threading.RLock
    ) -> None:
        self.store = store
        self.settings = settings
        self._mutex = mutex
        self.ingesting = False

    def close(self) -> None:
        """Nothing to let go of: Milvus keeps the indexes."""

    def document_count(self) -> int:
        """Documents the index holds: one chunk of each has index 0."""
        return self.store.count_where("chunk_index == 0")

    def start_ingest(self) -> None:
        """Nothing to prepare: Milvus indexes chunks as they are written."""

    def finish_ingest(self, generation: int, *, removed: bool) -> tuple[int, int]:
        """Seal the written segments and mark ``generation`` complete."""
        self.store.flush()
        updates: dict[str, str | int] = {"ingest_state": STATE_COMPLETE}
        if removed:
            updates["removed_generation"] = generation
        self.store.set_state(**updates)
        return self.store.count(), self.document_count()

    def rank(
        self,
        query: str,
        embed_query: QueryEmbedder,
        mode: SearchMode,
        wanted: int,
        depth: int,
        search_filter: SearchFilter,
    ) -> Ranked:
        """The ``wanted`` best chunks, each retriever pooling ``depth``, in document order."""
        expr = search_filter.milvus_expr()
        terms = tokenize(query)
        scores: dict[str, dict[str, float]] = {}
        sources: dict[str, str] = {}
        records: dict[str, StoredChunk] = {}
        if mode == "hybrid" and self.settings.fusion in ("rrf", "weighted"):
            merged = self.store.search_hybrid(
                embed_query(query),
                terms,
                depth,
                expr,
                ranker=self.settings.fusion,
                rrf_k=self.settings.rrf_k,
                dense_weight=self.settings.dense_weight,
            )
            for chunk_id, source, score in merged:
                sources[chunk_id] = source
                scores[chunk_id] = {"fused": score}
            return (
                self._laid_out([(c, s) for c, _, s in merged], sources, wanted),
                records,
                scores,
            )

        runs: dict[str, list[tuple[str, float]]] = {}
        if mode in ("dense", "hybrid"):
            runs["dense"] = _record(
                self.store.search_dense(embed_query(query), depth, expr), "dense", scores, sources
            )
        if mode in ("lexical", "hybrid"):
            runs["lexical"] = _record(
                self.store.search_lexical(terms, depth, expr), "lexical", scores, sources
            )
        if mode != "hybrid":
            return self._laid_out(runs[mode], sources, wanted), records, scores

        document_runs = {
            name: best_per_document(run, sources.__getitem__) for name, run in runs.items()
        }
        fused = zscore_fusion(document_runs)
        document_score = {item.item_id: item.score for item in fused}
        chunk_order = [item.item_id for item in zscore_fusion(runs)]
        documents = [item.item_id for item in fused]
        laid_out = by_document(chunk_order, sources.__getitem__, documents)[:wanted]
        ordered = []
        for chunk_id in laid_out:
            scores[chunk_id]["fused"] = document_score[sources[chunk_id]]
            ordered.append((chunk_id, scores[chunk_id]["fused"]))
        return ordered, records, scores

    @staticmethod
    def _laid_out(
        ranking: Sequence[tuple[str, float]], sources: dict[str, str], wanted: int
    ) -> list[tuple[str, float]]:
        """``ranking`` in document order (a document ranks where its best chunk does)."""
        order = [chunk_id for chunk_id, _ in ranking]
        score = dict(ranking)
        documents = list(dict.fromkeys(sources[chunk_id] for chunk_id in order))
        return [(c, score[c]) for c in by_document(order, sources.__getitem__, documents)[:wanted]]


def _record(
    hits: Sequence[Hit],
    name: str,
    scores: dict[str, dict[str, float]],
    sources: dict[str, str],
) -> list[tuple[str, float]]:
    """Note each hit's source and its ``name`` score and rank; returns (chunk id, score)."""
    run = []
    for rank, (chunk_id, source, score) in enumerate(hits, start=1):
        sources[chunk_id] = source
        scores.setdefault(chunk_id, {}).update({name: score, f"{name}_rank": float(rank)})
        run.append((chunk_id, score))
    return run
