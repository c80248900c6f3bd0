"""Search over the Chroma store with medgraph's BM25 beside it (dense, lexical, hybrid).

Chroma holds the vectors, texts and metadata; local Chroma has no lexical index, so BM25 lives in
``index_dir/bm25`` as memory-mapped segments (:mod:`~medgraph.knowledge.lexical`). Every chunk
records the generation (ingest) that stored or re-labelled it, so a process whose BM25 files are
behind fetches only the chunks of later generations and adds them as a new segment; it rebuilds
nothing. Deleted chunks are found through the documents those chunks belong to, or (after a
prune) by comparing chunk ids; a chunk count that disagrees with the store also triggers that id
comparison, so the lexical side never silently drifts from the store.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medgraph.knowledge.chroma_store import ChromaStore
from medgraph.knowledge.chunking import passage_text
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.fusion import (
    best_per_document,
    by_document,
    document_rankings,
    reciprocal_rank_fusion,
    zscore_fusion,
)
from medgraph.knowledge.ingest_plan import stored_title
from medgraph.knowledge.lexical import LexicalIndex, tokenize
from medgraph.knowledge.search_filter import SearchFilter
from medgraph.knowledge.store import STATE_COMPLETE, StoredChunk, document_text

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from medgraph.knowledge.search import QueryEmbedder, Ranked, SearchMode

logger = logging.getLogger(__name__)

_LexicalResult = tuple[list[tuple[str, float]], dict[str, "StoredChunk"]]


def _stored_year(stored: StoredChunk) -> int | None:
    year = stored.metadata.get("year")
    return None if year is None else int(year)


# Stored chunks are added to BM25 this many at a time: one segment each, merged by size tier.
_LEXICAL_PAGE = 50_000
# Document-level BM25 rows are rebuilt this many documents at a time.
_DOCUMENT_PAGE = 10_000


def _pages(records: Iterable[StoredChunk], size: int) -> Iterator[list[StoredChunk]]:
    page: list[StoredChunk] = []
    for record in records:
        page.append(record)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _document_entry(chunks: Sequence[StoredChunk]) -> tuple[str, int | None]:
    """A document's row for the document-level BM25: its text (:func:`document_text`) and its
    year."""
    return document_text(chunks), _stored_year(
        min(chunks, key=lambda r: r.metadata.get("start", 0))
    )


def _with_records(
    lexical: LexicalIndex,
    records: Sequence[StoredChunk],
    generation: int,
    *,
    delete: Iterable[str] = (),
    store_id: str | None = None,
    documents: Mapping[str, Sequence[StoredChunk]] | None = None,
) -> LexicalIndex:
    """``lexical`` plus ``records`` (replacing rows of the same ids) and minus ``delete``.

    ``documents`` maps source ids to every chunk the store holds of them: their document-level
    rows are rebuilt from those chunks (a source with none is deleted there).
    """
    return lexical.updated(
        generation=generation,
        delete=delete,
        ids=[record.chunk_id for record in records],
        texts=[passage_text(stored_title(record.metadata), record.text) for record in records],
        source_ids=[record.source_id for record in records],
        years=[_stored_year(record) for record in records],
        store_id=store_id,
        documents=None
        if documents is None
        else {
            source: _document_entry(chunks) if chunks else None
            for source, chunks in documents.items()
        },
    )


def _chunks_by_source(
    store: ChromaStore, source_ids: Iterable[str]
) -> dict[str, list[StoredChunk]]:
    """Every stored chunk (with text) of each of ``source_ids``; [] for a source with none."""
    found: dict[str, list[StoredChunk]] = {source: [] for source in source_ids}
    for record in store.scan_sources(list(found), texts=True):
        found.setdefault(record.source_id, []).append(record)
    return found


def _exact_lexical_runs(
    lexical: LexicalIndex,
    terms: Sequence[str],
    runs: Mapping[str, Sequence[tuple[str, float]]],
    document_pool: Sequence[tuple[str, float]],
    masks: _FilterMasks,
    known: _ExactScores | None = None,
) -> tuple[dict[str, list[tuple[str, float]]], dict[str, tuple[str, float]]]:
    """Document runs for score fusion in which BM25 scores every candidate document.

    The candidates are the documents of ``runs`` and of ``document_pool`` (whole-document BM25's
    best). The ``lexical`` run becomes each candidate's best chunk score and a ``documents`` run
    its whole-document score, both exact (0.0 where no query term occurs), so a document that the
    dense pool found but the lexical pool cut off is standardised by its real BM25 score rather
    than the pool's floor. The dense run is kept as it came (its misses still take its floor).
    ``known`` holds scores already computed for some candidates (the BM25 thread scores its own
    pools' documents); only the others are scored here. Also returns each candidate's best BM25
    chunk (id, score).
    """
    candidates = set(dict(document_pool))
    for run in runs.values():
        candidates.update(document for document, _ in run)
    known = known or _ExactScores(frozenset(), {}, {})
    rest = _ExactScores.of(lexical, terms, candidates - known.asked, masks)
    exact = {name: list(run) for name, run in runs.items()}
    best_chunks = {**known.chunks, **rest.chunks}
    exact["lexical"] = _best_first(best_chunks)
    if lexical.documents is not None:
        exact["documents"] = _best_first({**known.documents, **rest.documents})
    return exact, best_chunks


@dataclass(frozen=True)
class _ExactScores:
    """Exact BM25 scores of the documents ``asked``: each one's best chunk (id, score) and its
    whole-document score (id, score); a document with no live row is absent."""

    asked: frozenset[str]
    chunks: dict[str, tuple[str, float]]
    documents: dict[str, tuple[str, float]]

    @classmethod
    def of(
        cls,
        lexical: LexicalIndex,
        terms: Sequence[str],
        sources: Iterable[str],
        masks: _FilterMasks,
    ) -> _ExactScores:
        """Score ``sources`` at the chunk level and, if ``lexical`` has one, the document level."""
        asked = frozenset(sources)
        level = lexical.documents
        documents = {} if level is None else level.best_scores(terms, asked, masks.documents)
        return cls(asked, lexical.best_scores(terms, asked, masks.chunks), documents)


@dataclass(frozen=True)
class _Bm25Side:
    """BM25's part of a hybrid search that needs no stored records, done in one pool thread while
    the calling thread embeds the query and queries Chroma."""

    hits: list[tuple[str, float]]
    """The best chunks, (chunk id, score)."""
    sources: dict[str, str]
    """The hits' documents, by chunk id."""
    pool: list[tuple[str, float]]
    """Whole-document BM25's best documents (z-score fusion only)."""
    exact: _ExactScores
    """Exact scores of the hits' documents and of the pool (z-score fusion only)."""

    @classmethod
    def run(
        cls,
        lexical: LexicalIndex,
        terms: Sequence[str],
        depth: int,
        masks: _FilterMasks,
        *,
        exact: bool,
    ) -> _Bm25Side:
        """Search ``depth`` chunks (and, with ``exact``, documents) and score their documents."""
        hits = lexical.search(terms, depth, masks.chunks)
        sources = lexical.sources_of(chunk_id for chunk_id, _ in hits)
        if not exact:
            return cls(hits, sources, [], _ExactScores(frozenset(), {}, {}))
        level = lexical.documents
        pool = [] if level is None else level.search_tokens(terms, depth, masks.documents)
        candidates = set(sources.values()).union(document for document, _ in pool)
        return cls(hits, sources, pool, _ExactScores.of(lexical, terms, candidates, masks))


@dataclass(frozen=True)
class _FilterMasks:
    """A search filter's BM25 row masks, built once per query (each is a pass over the index
    when the filter names years or sources; None without such a filter)."""

    chunks: npt.NDArray[np.float32] | None
    documents: npt.NDArray[np.float32] | None

    @classmethod
    def of(cls, lexical: LexicalIndex, search_filter: SearchFilter) -> _FilterMasks:
        """The masks of ``search_filter`` over ``lexical`` and its document level."""

        def mask(level: LexicalIndex) -> npt.NDArray[np.float32] | None:
            return level.mask(
                year_min=search_filter.year_min,
                year_max=search_filter.year_max,
                source_ids=search_filter.source_ids,
            )

        level = lexical.documents
        return cls(mask(lexical), mask(level) if level is not None else None)


def _best_first(best: Mapping[str, tuple[str, float]]) -> list[tuple[str, float]]:
    """(source, score) of each source's best row, best first, ties by source id."""
    return sorted(
        ((source, score) for source, (_, score) in best.items()), key=lambda p: (-p[1], p[0])
    )


class ChromaSearch:
    """Dense, BM25 and hybrid search over a :class:`ChromaStore` and the BM25 files in
    ``index_dir``; keeps the BM25 index in step with what the store holds.

    ``mutex`` is the owning index's lock: searches and ingests take it for short steps.
    """

    def __init__(
        self,
        store: ChromaStore,
        settings: KnowledgeSettings,
        index_dir: Path,
        location: str,
        mutex: threading.RLock,
    ) -> None:
        self.store = store
        self.settings = settings
        self.index_dir = index_dir
        self.location = location
        self._mutex = mutex
        self._lexical: LexicalIndex | None = None
        self._lexical_key: tuple[int, bool, int | None] | None = None
        self.ingesting = False
        """While True (an ingest of this process is writing), searches keep the BM25 index of the
        last complete generation instead of syncing to a half-written one."""
        self._pool: ThreadPoolExecutor | None = None
        self._ingest_base: LexicalIndex | None = None

    def close(self) -> None:
        """Forget the BM25 index and stop the search threads."""
        with self._mutex:
            self._lexical = None
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def document_count(self) -> int:
        """Documents the index holds (BM25's live sources)."""
        return self.lexical_index().document_count

    def start_ingest(self) -> None:
        """Remember the BM25 index an ingest starts from (call under the mutex)."""
        self._ingest_base = self.lexical_base()

    def lexical_index(self) -> LexicalIndex:
        """The BM25 index matching what the store holds (brought up to date if behind)."""
        store = self.store
        state = store.state()
        generation = int(state.get("generation", 0))
        current = state.get("ingest_state") == STATE_COMPLETE
        # While an ingest runs (or after one died) the generation does not move as chunks land,
        # so the chunk count is part of the key there.
        key = (generation, current, None if current else store.count())
        with self._mutex:
            if self._lexical is not None and (self._lexical_key == key or self.ingesting):
                return self._lexical
            if not current:
                logger.warning(
                    "index %s: an ingest is running or was interrupted; BM25 adds the chunks "
                    "stored so far in memory (re-run the ingest to finish it)",
                    self.location,
                )
            base = self.lexical_base()
            lexical = self._sync_lexical(store, base, state, complete=current)
            # Another process ingested into the shared server, or the saved files were unusable
            # (another tokeniser, another layout) and BM25 was rebuilt: keep the result on disk,
            # so the next start loads it instead of building it again.
            if current and lexical is not base:
                try:
                    self._save_lexical(lexical)
                except OSError as error:
                    logger.warning(
                        "index %s: could not save the BM25 index (%s); it is rebuilt in memory "
                        "on each start until the next ingest",
                        self.location,
                        error,
                    )
            self._lexical, self._lexical_key = lexical, key
            return lexical

    def lexical_base(self) -> LexicalIndex | None:
        """The newest BM25 index at hand: the one in memory or the saved one, if newer."""
        folder = self.index_dir / "bm25"
        cached = self._lexical
        saved = LexicalIndex.saved_generation(folder)
        if cached is not None and (saved is None or saved <= cached.generation):
            return cached
        return LexicalIndex.load(folder) or cached

    def _sync_lexical(
        self,
        store: ChromaStore,
        base: LexicalIndex | None,
        state: Mapping[str, Any],
        *,
        complete: bool,
    ) -> LexicalIndex:
        """``base`` plus the chunks stored (and minus those deleted) since its generation.

        The result's generation is the store's when ``complete``; while an ingest runs (or after
        one died) it stays one below, so the next sync fetches that generation's chunks again.
        """
        generation = int(state.get("generation", 0))
        synced = generation if complete else generation - 1
        store_id = store.collection_id
        if (
            base is None
            or base.documents is None  # saved without its document level: not incremental
            or base.store_id not in (None, store_id)
            or base.generation > generation
        ):
            return self._build_lexical(store, synced, store_id)
        lexical = base
        if base.generation < generation:
            changed = store.scan_where({"generation": {"$gt": base.generation}}, texts=True)
            for records in _pages(changed, _LEXICAL_PAGE):
                touched = _chunks_by_source(store, {record.source_id for record in records})
                kept = {record.chunk_id for chunks in touched.values() for record in chunks}
                lexical = _with_records(
                    lexical,
                    records,
                    synced,
                    delete=lexical.live_ids_of_sources(touched) - kept,
                    store_id=store_id,
                    documents=touched,
                )
            if int(state.get("removed_generation", 0)) > base.generation:
                lexical = self._reconcile_lexical(store, lexical, synced)
        if len(lexical) != store.count():
            logger.info(
                "index %s: BM25 holds %d chunks, the store %d; comparing chunk ids",
                self.location,
                len(lexical),
                store.count(),
            )
            lexical = self._reconcile_lexical(store, lexical, synced)
        return lexical

    @staticmethod
    def _reconcile_lexical(
        store: ChromaStore, lexical: LexicalIndex, generation: int
    ) -> LexicalIndex:
        """``lexical`` with exactly the store's chunk ids (reads texts of missing chunks only).

        Documents whose chunks changed, and any the document level holds or lacks wrongly, get
        their document-level rows rebuilt from the store.
        """
        stored = set(store.scan_ids())
        indexed = set(lexical.ids)
        removed = indexed - stored
        touched = set(lexical.sources_of(removed).values())
        lexical = lexical.updated(generation=generation, delete=removed)
        missing = sorted(stored - indexed)
        for start in range(0, len(missing), _LEXICAL_PAGE):
            records = list(store.get(missing[start : start + _LEXICAL_PAGE]).values())
            touched.update(record.source_id for record in records)
            lexical = _with_records(lexical, records, generation)
        listed = set(lexical.documents.ids) if lexical.documents is not None else set()
        touched |= listed ^ lexical.live_sources()
        return ChromaSearch._refresh_documents(store, lexical, touched, generation)

    @staticmethod
    def _refresh_documents(
        store: ChromaStore, lexical: LexicalIndex, source_ids: Iterable[str], generation: int
    ) -> LexicalIndex:
        """``lexical`` with the document-level rows of ``source_ids`` rebuilt from the store."""
        ordered = sorted(source_ids)
        for start in range(0, len(ordered), _DOCUMENT_PAGE):
            touched = _chunks_by_source(store, ordered[start : start + _DOCUMENT_PAGE])
            lexical = _with_records(lexical, [], generation, documents=touched)
        if lexical.documents is None:
            lexical = lexical.updated(generation=generation, documents={})
        return lexical

    @staticmethod
    def _build_lexical(
        store: ChromaStore, generation: int, store_id: str | None = None
    ) -> LexicalIndex:
        """BM25 over every stored chunk, read and indexed a page at a time (bounded memory)."""
        lexical = LexicalIndex.build([], [], [], [], generation, store_id=store_id, documents={})
        for records in _pages(store.scan(texts=True), _LEXICAL_PAGE):
            lexical = _with_records(lexical, records, generation)
        return ChromaSearch._refresh_documents(store, lexical, lexical.live_sources(), generation)

    def _save_lexical(self, lexical: LexicalIndex) -> None:
        """Save ``lexical`` unless the folder holds a newer (or as new and usable) index.

        Writers and readers that rebuilt BM25 may save: a lock on the BM25 files orders them.
        """
        from filelock import FileLock

        folder = self.index_dir / "bm25"
        self.index_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.index_dir / "bm25.lock"), timeout=300, thread_local=False):
            saved = LexicalIndex.saved_generation(folder)
            if (
                saved is None
                or saved < lexical.generation
                or (saved == lexical.generation and LexicalIndex.load(folder) is None)
            ):
                lexical.save(folder)

    # -- ingest --------------------------------------------------------------------------------

    def finish_ingest(self, generation: int, *, removed: bool) -> tuple[int, int]:
        """Bring BM25 up to the store (a new segment), save it, mark ``generation`` complete.

        ``removed``: the ingest deleted chunks other than replaced ones (a prune, an emptied
        document), which readers find by comparing chunk ids. Returns the chunks and documents
        the index then holds.
        """
        store = self.store
        state = store.set_state(removed_generation=generation) if removed else store.state()
        lexical = self._sync_lexical(store, self._ingest_base, state, complete=True)
        with self._mutex:
            self._save_lexical(lexical)
            store.set_state(ingest_state=STATE_COMPLETE)
            self._lexical, self._lexical_key = lexical, (generation, True, None)
            self._ingest_base = None
        return len(lexical), lexical.document_count

    def rank(
        self,
        query: str,
        embed_query: QueryEmbedder,
        mode: SearchMode,
        wanted: int,
        depth: int,
        search_filter: SearchFilter,
    ) -> Ranked:
        """The ``wanted`` best chunks, each retriever pooling ``depth``; see
        :meth:`~medgraph.knowledge.index.LiteratureIndex.search` for what hybrid does."""
        # Hybrid search ranks 4x more candidates than it returns: it fetches ids and scores
        # only, takes their documents from the BM25 chunk table, and reads the records (texts,
        # metadata) of the chunks it returns. An origins filter needs every candidate's record.
        lean = mode == "hybrid" and search_filter.origins is None
        store = self.store
        lexical: LexicalIndex | None = None
        lexical_run: Callable[[], _LexicalResult] | None = None
        lexical_job: Future[_LexicalResult] | None = None
        bm25_job: Future[_Bm25Side] | None = None
        masks: _FilterMasks | None = None
        query_terms = tokenize(query)
        if mode in ("lexical", "hybrid"):
            lexical = self.lexical_index()
            masks = _FilterMasks.of(lexical, search_filter)
            lexical_run = functools.partial(
                self._lexical_hits,
                store,
                lexical,
                query_terms,
                depth,
                search_filter,
                masks.chunks,
            )
            if mode == "hybrid":
                # BM25 runs while this thread embeds the query; without records to read it also
                # pools whole documents and scores the documents it found (z-score fusion)
                if lean:
                    bm25_job = self._search_pool().submit(
                        _Bm25Side.run,
                        lexical,
                        query_terms,
                        depth,
                        masks,
                        exact=self.settings.fusion == "zscore",
                    )
                else:
                    lexical_job = self._search_pool().submit(lexical_run)
        records: dict[str, StoredChunk] = {}
        scores: dict[str, dict[str, float]] = {}
        rankings: dict[str, list[str]] = {}
        if mode in ("dense", "hybrid"):
            vector = embed_query(query)
            if lean:
                dense_hits = store.query_ids(vector, depth, search_filter.chroma_where())
            else:
                dense_hits = []
                for stored, similarity in self._dense_hits(store, vector, depth, search_filter):
                    records[stored.chunk_id] = stored
                    dense_hits.append((stored.chunk_id, similarity))
            rankings["dense"] = []
            for rank, (chunk_id, similarity) in enumerate(dense_hits, start=1):
                scores.setdefault(chunk_id, {}).update(dense=similarity, dense_rank=float(rank))
                rankings["dense"].append(chunk_id)
        bm25 = bm25_job.result() if bm25_job is not None else None
        if lexical_run is not None:
            if bm25 is not None:
                lexical_hits = bm25.hits
            else:
                lexical_hits, lexical_records = (
                    lexical_job.result() if lexical_job is not None else lexical_run()
                )
                records.update(lexical_records)
            rankings["lexical"] = []
            for rank, (chunk_id, score) in enumerate(lexical_hits, start=1):
                scores.setdefault(chunk_id, {}).update(lexical=score, lexical_rank=float(rank))
                rankings["lexical"].append(chunk_id)

        sources = {chunk_id: stored.source_id for chunk_id, stored in records.items()}
        if bm25 is not None:
            sources.update(bm25.sources)
        if lean and lexical is not None:
            unknown = [chunk_id for chunk_id in scores if chunk_id not in sources]
            sources.update(lexical.sources_of(unknown))
            # chunks BM25 does not hold yet (an ingest is adding them): read their records
            late = [chunk_id for chunk_id in scores if chunk_id not in sources]
            if late:
                fetched = store.get(late)
                records.update(fetched)
                sources.update({chunk_id: stored.source_id for chunk_id, stored in fetched.items()})
                gone = set(late) - set(fetched)  # deleted since it was ranked (a prune)
                for name, ranking in rankings.items():
                    rankings[name] = [chunk_id for chunk_id in ranking if chunk_id not in gone]

        def document_of(chunk_id: str) -> str:
            return sources[chunk_id]

        if mode == "hybrid":
            best_chunks: dict[str, tuple[str, float]] = {}
            if self.settings.fusion == "rrf":
                fused = reciprocal_rank_fusion(
                    document_rankings(rankings, document_of), k=self.settings.rrf_k
                )
                chunk_fused = reciprocal_rank_fusion(rankings, k=self.settings.rrf_k)
            else:
                runs = {
                    name: [(chunk_id, scores[chunk_id][name]) for chunk_id in ranking]
                    for name, ranking in rankings.items()
                }
                document_runs = {
                    name: best_per_document(run, document_of) for name, run in runs.items()
                }
                if lexical is not None and masks is not None:
                    document_runs, best_chunks = _exact_lexical_runs(
                        lexical,
                        query_terms,
                        document_runs,
                        bm25.pool if bm25 is not None else [],
                        masks,
                        bm25.exact if bm25 is not None else None,
                    )
                fused = zscore_fusion(document_runs)
                chunk_fused = zscore_fusion(runs)
            document_score = {item.item_id: item.score for item in fused}
            chunk_order = [item.item_id for item in chunk_fused]
            # a document that only whole-document BM25 pooled has no chunk in the chunk pools:
            # it is shown by its best BM25 chunk
            pooled = {document_of(chunk_id) for chunk_id in chunk_order}
            for item in fused[:wanted]:
                if item.item_id not in pooled and item.item_id in best_chunks:
                    chunk_id, score = best_chunks[item.item_id]
                    sources[chunk_id] = item.item_id
                    scores.setdefault(chunk_id, {}).update(lexical=score)
                    chunk_order.append(chunk_id)
            laid_out = by_document(chunk_order, document_of, [item.item_id for item in fused])
            ordered = []
            for chunk_id in laid_out[:wanted]:
                scores[chunk_id]["fused"] = document_score[document_of(chunk_id)]
                ordered.append((chunk_id, scores[chunk_id]["fused"]))
        else:
            key = "dense" if mode == "dense" else "lexical"
            ranking = rankings[key]
            laid_out = by_document(
                ranking, document_of, list(dict.fromkeys(map(document_of, ranking)))
            )
            ordered = [(chunk_id, scores[chunk_id][key]) for chunk_id in laid_out[:wanted]]
        return ordered, records, scores

    def _search_pool(self) -> ThreadPoolExecutor:
        """Threads that run BM25 while calling threads embed their queries (made once)."""
        with self._mutex:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="medgraph-bm25")
            return self._pool

    # A hidden upload takes a slot of the fetched candidates, so with an origins filter the
    # search fetches deeper (x4 per round) until ``depth`` visible hits or the index runs out.
    _OVERFETCH = 4

    def _dense_hits(
        self,
        store: ChromaStore,
        vector: npt.NDArray[np.float32],
        depth: int,
        search_filter: SearchFilter,
    ) -> list[tuple[StoredChunk, float]]:
        fetch = depth
        while True:
            hits = store.query(vector, fetch, search_filter.chroma_where())
            visible = [(chunk, sim) for chunk, sim in hits if search_filter.shows(chunk.metadata)]
            if search_filter.origins is None or len(visible) >= depth or len(hits) < fetch:
                return visible[:depth]
            fetch *= self._OVERFETCH

    def _lexical_hits(
        self,
        store: ChromaStore,
        lexical: LexicalIndex,
        tokens: Sequence[str],
        depth: int,
        search_filter: SearchFilter,
        mask: npt.NDArray[np.float32] | None,
    ) -> _LexicalResult:
        """The ``depth`` best visible BM25 hits and their stored records; ``mask`` is
        ``search_filter``'s BM25 row mask (:class:`_FilterMasks`)."""
        fetch = depth
        while True:
            hits = lexical.search(tokens, fetch, mask)
            # BM25 keeps no metadata: the hits' records (documents, origins) come from the store.
            stored = store.get([chunk_id for chunk_id, _ in hits])
            visible = [
                (chunk_id, score)
                for chunk_id, score in hits
                if chunk_id in stored and search_filter.shows(stored[chunk_id].metadata)
            ]
            if search_filter.origins is None or len(visible) >= depth or len(hits) < fetch:
                return visible[:depth], stored
            fetch *= self._OVERFETCH
