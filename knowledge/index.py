"""The literature index: ingest files into Chroma + BM25 and search them (dense, lexical, hybrid).

Layout of ``index_dir`` (embedded store)::

    chroma/        Chroma PersistentClient folder: vectors, chunk texts, metadata
    bm25/          BM25 over the same chunks: memory-mapped segments and a current.json pointer
    index.json     embedding model and collection that built the index
    write.lock     held by the one process allowed to write (with write.pid naming it)

With ``chroma_url`` set, vectors live on a Chroma server shared by many processes and only the BM25
files stay in ``index_dir``. Every chunk records the generation (ingest) that stored or re-labelled
it, so a process whose BM25 files are behind fetches only the chunks of later generations and adds
them as a new segment; it rebuilds nothing. Deleted chunks are found through the documents those
chunks belong to, or (after a prune) by comparing chunk ids; a chunk count that disagrees with the
store also triggers that id comparison, so the lexical side never silently drifts from the store.

Ingest is incremental and resumable: chunk ids are content hashes, chunks already stored are not
embedded again, and new chunks are committed in batches, so re-running an interrupted ingest (even
one killed with SIGKILL) finishes the job with every chunk stored exactly once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from medgraph.errors import (
    ConfigurationError,
    IndexUnavailableError,
    IngestError,
    MedgraphError,
)
from medgraph.knowledge.chunking import PASSAGE_FORMAT, passage_text
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.embeddings import vector_family
from medgraph.knowledge.fusion import (
    best_per_document,
    by_document,
    document_rankings,
    reciprocal_rank_fusion,
    zscore_fusion,
)
from medgraph.knowledge.lexical import LexicalIndex, tokenize
from medgraph.knowledge.store import (
    STORE_FORMAT,
    ChromaStore,
    Metadata,
    StoredChunk,
    chunk_from_stored,
    chunk_metadata,
    document_from_metadata,
    evidence_from_stored,
)
from medgraph.knowledge.types import Chunk, Document, Evidence

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from filelock import FileLock

    from medgraph.knowledge.embeddings import Embedder
    from medgraph.knowledge.readers import ReadFailure

logger = logging.getLogger(__name__)

SearchMode = Literal["hybrid", "dense", "lexical"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
Reranker = Callable[[str, Sequence[str]], Sequence[float]]
"""Scores (higher is better) for ``(query, passages)``; e.g. a cross-encoder."""
_LexicalResult = tuple[list[tuple[str, float]], dict[str, "StoredChunk"]]

_RECORD = "index.json"
_LOCK = "write.lock"
_PID = "write.pid"
_STATE_COMPLETE = "complete"
_STATE_RUNNING = "running"
# Chunks are sorted by length inside windows of this many batches: batches of similar length pad
# less, while documents still finish (and the progress bar's documents/s moves) in input order.
_SORT_WINDOW_BATCHES = 16


class IngestLimitError(IngestError):
    """One ingest holds more documents or passages than its caller allows."""


class InvalidQueryError(MedgraphError, ValueError):
    """A search request is malformed: empty query, unknown mode, bad ``k`` or bad filter."""


@dataclass(frozen=True)
class SearchFilter:
    """Restrict a search to a year range, a set of documents and/or the uploads it may see.

    Build it from the documented ``where`` mapping with :meth:`parse`::

        {"year": {"gte": 2010, "lte": 2015}}     # 2010..2015 inclusive; {"year": 2012} for one year
        {"source_ids": ["21645374", "10808977"]}  # only these documents
        {"origins": ["upload:3f2a..."]}           # the operator's corpus plus these uploads only

    Keys combine with AND. Chunks of documents without a year never pass a year filter. Records
    of the operator's corpus (no origin) always pass the origins filter.
    """

    year_min: int | None = None
    year_max: int | None = None
    source_ids: tuple[str, ...] | None = None
    origins: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, where: Mapping[str, Any] | SearchFilter | None) -> SearchFilter:
        """Validate a ``where`` mapping (see the class docstring)."""
        if where is None:
            return cls()
        if isinstance(where, SearchFilter):
            return where
        if not isinstance(where, Mapping):
            raise InvalidQueryError(f"filter must be a mapping, got {type(where).__name__}")
        unknown = set(where) - {"year", "source_ids", "origins"}
        if unknown:
            raise InvalidQueryError(
                f"unknown filter key(s) {', '.join(sorted(map(str, unknown)))}; use 'year' "
                f"({{'gte': 2010, 'lte': 2015}} or a single year), 'source_ids' and/or "
                f"'origins' (lists)"
            )
        year_min = year_max = None
        year = where.get("year")
        if year is not None:
            if isinstance(year, Mapping):
                bad = set(year) - {"gte", "lte"}
                if bad or not year:
                    raise InvalidQueryError(
                        f"year filter {dict(year)!r} must use 'gte' and/or 'lte', e.g. "
                        f"{{'gte': 2010, 'lte': 2015}}"
                    )
                year_min = _year(year.get("gte"))
                year_max = _year(year.get("lte"))
            else:
                year_min = year_max = _year(year)
            if year_min is not None and year_max is not None and year_min > year_max:
                raise InvalidQueryError(f"year filter is empty: gte {year_min} > lte {year_max}")
        source_ids = None
        if "source_ids" in where:
            raw = where["source_ids"]
            if isinstance(raw, str) or not isinstance(raw, Iterable):
                raise InvalidQueryError(
                    f"'source_ids' must be a list of ids, got {type(raw).__name__}"
                )
            source_ids = tuple(str(item) for item in raw)
        origins = None
        if where.get("origins") is not None:
            raw = where["origins"]
            if isinstance(raw, str) or not isinstance(raw, Iterable):
                raise InvalidQueryError(
                    f"'origins' must be a list of upload origins, got {type(raw).__name__}"
                )
            origins = tuple(str(item) for item in raw)
        return cls(year_min, year_max, source_ids, origins)

    @property
    def active(self) -> bool:
        """Whether the filter excludes anything."""
        return (
            self.year_min is not None
            or self.year_max is not None
            or self.source_ids is not None
            or self.origins is not None
        )

    def shows(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a stored chunk passes the origins rule (operator records always do)."""
        origin = metadata.get("origin")
        return self.origins is None or not origin or origin in self.origins

    def chroma_where(self) -> dict[str, Any] | None:
        """The filter as a Chroma ``where`` clause."""
        clauses: list[dict[str, Any]] = []
        if self.year_min is not None:
            clauses.append({"year": {"$gte": self.year_min}})
        if self.year_max is not None:
            clauses.append({"year": {"$lte": self.year_max}})
        if self.source_ids is not None:
            clauses.append({"source_id": {"$in": list(self.source_ids) or [""]}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _year(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidQueryError(f"filter years must be integers, got {value!r}")
    return value


@dataclass
class IngestReport:
    """What one :meth:`LiteratureIndex.ingest` call did."""

    files: int = 0
    documents: int = 0
    """Documents read from the inputs (after dropping repeated source ids)."""
    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    documents_removed: int = 0
    documents_refused: int = 0
    """Documents left as they were: an upload named a record of another origin."""
    chunks_added: int = 0
    """Chunks embedded and stored by this call."""
    chunks_unchanged: int = 0
    """Chunks already stored with the same content (not embedded again)."""
    chunks_updated: int = 0
    """Chunks whose text was stored already but whose metadata (title, position...) changed."""
    chunks_removed: int = 0
    failures: list[ReadFailure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    embedding_seconds: float = 0.0
    index_documents: int = 0
    index_chunks: int = 0

    @property
    def ok(self) -> bool:
        """True when every input file was read."""
        return not self.failures

    def summary(self, *, problems: bool = True) -> str:
        """Counts, time and throughput for people; ``problems`` adds warnings and failures."""
        rate = self.chunks_added / self.embedding_seconds if self.embedding_seconds > 0 else 0.0
        lines = [
            f"Read {self.documents} documents from {self.files} files in {self.seconds:.1f} s: "
            f"{self.documents_added} new, {self.documents_updated} changed, "
            f"{self.documents_unchanged} unchanged, {self.documents_removed} removed.",
            f"Chunks: {self.chunks_added} embedded"
            + (f" ({rate:.1f} chunks/s)" if self.chunks_added else "")
            + f", {self.chunks_unchanged} unchanged, {self.chunks_updated} re-labelled, "
            f"{self.chunks_removed} removed. The index holds {self.index_chunks} chunks of "
            f"{self.index_documents} documents.",
        ]
        if not problems:
            return "\n".join(lines)
        lines.extend(f"warning: {warning}" for warning in self.warnings)
        if self.failures:
            lines.append(f"{len(self.failures)} file(s) could not be read:")
            lines.extend(f"  {failure.path}: {failure.reason}" for failure in self.failures)
        return "\n".join(lines)


@dataclass(frozen=True)
class IndexStats:
    """Size and make-up of an index."""

    index_dir: str
    location: str
    collection: str
    embedding_model: str
    documents: int
    chunks: int
    generation: int


@dataclass
class _PendingChunk:
    chunk: Chunk
    metadata: Metadata


@dataclass
class _Plan:
    """The work an ingest found: chunks to embed, metadata to refresh, ids to delete."""

    pending: list[_PendingChunk] = field(default_factory=list)
    relabel_ids: list[str] = field(default_factory=list)
    relabel_metadata: list[Metadata] = field(default_factory=list)
    stale_ids: list[str] = field(default_factory=list)
    emptied: bool = False
    """A stored document lost all its chunks (its stale chunks belong to no new chunk)."""


def _document_hash(document: Document, salt: str) -> str:
    # Without an origin the hash is what it was before origins existed (no re-labelling).
    payload = (
        salt
        + "\x00"
        + document.model_dump_json(exclude={"origin"} if not document.origin else None)
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _title(metadata: Mapping[str, Any]) -> str | None:
    title = metadata.get("title")
    return title if isinstance(title, str) else None


def _same_position(stored: Mapping[str, Any], wanted: Metadata) -> bool:
    return all(stored.get(key) == wanted.get(key) for key in wanted)


def _stored_year(stored: StoredChunk) -> int | None:
    year = stored.metadata.get("year")
    return None if year is None else int(year)


# Hybrid search fuses pools of at least this many chunks per retriever, whatever ``k``: score
# fusion standardises each retriever's scores over its pool, so the pool is fixed rather than
# tied to k (BioASQ dev, hybrid MRR@10: 0.901 with pools of 40 chunks, 0.914 with 120).
_FUSION_POOL = 100

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
    """A document's row for the document-level BM25: its title line, then the text its chunks
    cover (each overlap between neighbouring chunks once), and its year."""
    ordered = sorted(
        chunks, key=lambda record: (int(record.metadata.get("start", 0)), record.chunk_id)
    )
    parts: list[str] = []
    covered = 0
    for record in ordered:
        start = int(record.metadata.get("start", 0))
        end = int(record.metadata.get("end", start + len(record.text)))
        if end > covered:
            parts.append(record.text[max(0, covered - start) :])
            covered = end
    return passage_text(_title(ordered[0].metadata), "\n".join(parts)), _stored_year(ordered[0])


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
        texts=[passage_text(_title(record.metadata), record.text) for record in records],
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


class LiteratureIndex:
    """Hybrid (dense + BM25) search over a literature collection stored in Chroma.

    Nothing heavy happens in the constructor: the embedding model and the store open on first use.
    ``embedder`` replaces the sentence-transformers model built from the settings (any object with
    the :class:`~medgraph.knowledge.embeddings.Embedder` methods); ``reranker`` re-scores the best
    candidates of every search (else a cross-encoder is built from ``settings.reranker_model``).
    """

    def __init__(
        self,
        settings: KnowledgeSettings | None = None,
        *,
        index_dir: Path | str | None = None,
        chroma_url: str | None = None,
        embedder: Embedder | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        settings = settings or KnowledgeSettings()
        updates: dict[str, Any] = {}
        if index_dir is not None:
            updates["index_dir"] = Path(index_dir)
        if chroma_url is not None:
            updates["chroma_url"] = chroma_url
        self.settings = settings.model_copy(update=updates) if updates else settings
        self.index_dir = Path(self.settings.index_dir).expanduser()
        self._embedder = embedder
        self._reranker = reranker
        self._store: ChromaStore | None = None
        self._lexical: LexicalIndex | None = None
        self._lexical_key: tuple[int, bool, int | None] | None = None
        self._write_lock: FileLock | None = None
        self._mutex = threading.RLock()
        self._ingest_lock = threading.Lock()
        self._ingesting = False
        self._pool: ThreadPoolExecutor | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> LiteratureIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LiteratureIndex({self.location!r})"

    def close(self) -> None:
        """Release the write lock and forget the store; the object may be opened again later."""
        with self._mutex:
            if self._store is not None:
                self._store.close()
                self._store = None
            self._lexical = None
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._write_lock is not None:
                (self.index_dir / _PID).unlink(missing_ok=True)
                self._write_lock.release(force=True)
                self._write_lock = None

    @property
    def embedded(self) -> bool:
        """True for an embedded Chroma store in ``index_dir``; False with a Chroma server."""
        return self.settings.chroma_url is None

    @property
    def location(self) -> str:
        """The index folder, or the Chroma server and the local BM25 folder."""
        if self.embedded:
            return str(self.index_dir)
        return (
            f"{self.settings.chroma_url} (collection {self.settings.collection}, "
            f"BM25 in {self.index_dir})"
        )

    @property
    def embedder(self) -> Embedder:
        """The embedding model (built from the settings on first use)."""
        if self._embedder is None:
            from medgraph.knowledge.embeddings import SentenceTransformerEmbedder

            self._embedder = SentenceTransformerEmbedder.from_settings(self.settings)
        return self._embedder

    def _new_store(self) -> ChromaStore:
        if self.embedded:
            return ChromaStore(collection=self.settings.collection, path=self.index_dir / "chroma")
        return ChromaStore(collection=self.settings.collection, url=self.settings.chroma_url)

    # -- opening -------------------------------------------------------------------------------

    def _missing(self, detail: str) -> IndexUnavailableError:
        return IndexUnavailableError(
            f"no literature index at {self.location}: {detail}; run "
            f"`medgraph ingest PATH --index {self.index_dir}` first"
        )

    def _check_identity(self, state: Mapping[str, Any]) -> None:
        wanted = self.embedder.identity
        for key, value in wanted.items():
            stored = state.get(key)
            if stored is not None and stored != value:
                raise ConfigurationError(
                    f"the index at {self.location} was built with {key} {stored!r}, but the "
                    f"settings give {value!r}; search it with the same {key} "
                    f"(knowledge.{key}={stored!r}) or ingest into a new --index folder"
                )
        # Vectors of another backend may be mixed in only when they agree to cosine >= 0.999
        # (torch and fp32 ONNX); indexes from before backends were recorded hold torch vectors.
        # An ``auto`` embedder adopts the index's family before the check.
        stored_backend = str(state.get("embedding_backend", "torch"))
        follow = getattr(self.embedder, "follow_index_backend", None)
        if follow is not None:
            follow(stored_backend)
        family = getattr(self.embedder, "vector_family", None)
        if family is not None and vector_family(stored_backend) != family:
            requested = getattr(self.embedder, "requested_backend", family)
            raise ConfigurationError(
                f"the index at {self.location} holds vectors from the {stored_backend!r} "
                f"embedding backend, which the {requested!r} backend does not reproduce (cosine "
                f"below 0.999); set knowledge.embedding_backend={stored_backend} to use it, or "
                f"ingest into a new --index folder"
            )

    def _open_for_read(self) -> ChromaStore:
        with self._mutex:
            if self._store is not None:
                return self._store
            if self.embedded and not (self.index_dir / "chroma" / "chroma.sqlite3").is_file():
                raise self._missing("the folder holds no index")
            store = self._new_store()
            if not store.collection_exists():
                raise self._missing(f"collection {self.settings.collection!r} does not exist")
            self._check_identity(store.state())
            self._store = store
            return store

    def _acquire_write_lock(self) -> None:
        if self._write_lock is not None:
            return
        from filelock import FileLock, Timeout

        self.index_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.index_dir / _LOCK), timeout=0, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            holder = "another process"
            try:
                pid = int((self.index_dir / _PID).read_text().strip())
            except (OSError, ValueError):
                pid = None
            if pid == os.getpid():
                holder = "another LiteratureIndex in this process; close() it first"
            raise IndexUnavailableError(
                f"index {self.index_dir} is in use by {holder} (pid {pid or 'unknown'}); wait "
                f"for it or use a Chroma server (knowledge.chroma_url) so several processes can "
                f"share one index"
            ) from None
        (self.index_dir / _PID).write_text(str(os.getpid()))
        self._write_lock = lock

    def _open_for_write(self) -> ChromaStore:
        with self._mutex:
            held_before = self._write_lock is not None
            if self.embedded:
                self._acquire_write_lock()
            try:
                return self._create_store()
            except BaseException:
                if not held_before and self._write_lock is not None:
                    (self.index_dir / _PID).unlink(missing_ok=True)
                    self._write_lock.release(force=True)
                    self._write_lock = None
                raise

    def _create_store(self) -> ChromaStore:
        """Open (or create) the collection for writing and check it suits the embedder."""
        with self._mutex:
            store = self._store or self._new_store()
            embedder = self.embedder
            dimension = embedder.dimension  # loads the model, which settles its backend
            backend = getattr(embedder, "backend", None)
            store.create(
                {
                    "medgraph_format": STORE_FORMAT,
                    **embedder.identity,
                    **({"embedding_backend": backend} if backend else {}),
                    "dimension": dimension,
                    "generation": 0,
                    "ingest_state": _STATE_COMPLETE,
                }
            )
            state = store.state()
            self._check_identity(state)
            stored_dimension = state.get("dimension")
            if stored_dimension is not None and int(stored_dimension) != embedder.dimension:
                raise ConfigurationError(
                    f"the index at {self.location} holds {stored_dimension}-dimensional vectors "
                    f"but the embedding model makes {embedder.dimension}; ingest into a new "
                    f"--index folder"
                )
            self._store = store
            record = {
                "format": STORE_FORMAT,
                **embedder.identity,
                "embedding_backend": str(state.get("embedding_backend", "torch")),
                "dimension": embedder.dimension,
                "collection": self.settings.collection,
                "chroma_url": self.settings.chroma_url,
            }
            self.index_dir.mkdir(parents=True, exist_ok=True)
            (self.index_dir / _RECORD).write_text(json.dumps(record, indent=2) + "\n")
            return store

    def _lexical_index(self, store: ChromaStore) -> LexicalIndex:
        """The BM25 index matching what the store holds (brought up to date if behind)."""
        state = store.state()
        generation = int(state.get("generation", 0))
        current = state.get("ingest_state") == _STATE_COMPLETE
        # While an ingest runs (or after one died) the generation does not move as chunks land,
        # so the chunk count is part of the key there.
        key = (generation, current, None if current else store.count())
        with self._mutex:
            if self._lexical is not None and (self._lexical_key == key or self._ingesting):
                return self._lexical
            if not current:
                logger.warning(
                    "index %s: an ingest is running or was interrupted; BM25 adds the chunks "
                    "stored so far in memory (re-run the ingest to finish it)",
                    self.location,
                )
            base = self._lexical_base()
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

    def _lexical_base(self) -> LexicalIndex | None:
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
        return LiteratureIndex._refresh_documents(store, lexical, touched, generation)

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
        return LiteratureIndex._refresh_documents(
            store, lexical, lexical.live_sources(), generation
        )

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

    def ingest(
        self,
        paths: Sequence[Path | str] | Path | str,
        fmt: str = "auto",
        prune: bool = False,
        progress: bool = True,
        *,
        origin: str | None = None,
        prepare: Callable[[Document], Document] | None = None,
        max_documents: int | None = None,
        max_chunks: int | None = None,
    ) -> IngestReport:
        """Read files and folders into the index; returns what changed.

        Unchanged chunks are skipped, changed documents have their old chunks replaced, and with
        ``prune`` documents that are no longer among the inputs are removed. Files that cannot be
        read are listed in the report's ``failures``; everything else is still ingested.

        ``origin`` marks the records as added by someone other than the operator (an API
        upload, ``upload:<key hash>``): such an ingest adds records and replaces its own, but a
        record of another origin (the operator's corpus, another uploader) with the same source
        id is left as it was and counted in ``documents_refused``. ``prepare`` rewrites each
        document read (e.g. its source id) before anything is stored. ``max_documents`` and
        ``max_chunks`` bound one ingest: over them, :class:`IngestLimitError` is raised before
        anything is embedded or stored.
        """
        from medgraph.knowledge.readers import read_paths

        started = time.perf_counter()
        if isinstance(paths, (str, Path)):
            paths = [paths]
        result = read_paths(list(paths), fmt=fmt)
        report = IngestReport(files=len(result.files), failures=list(result.failures))
        read = [prepare(document) for document in result.documents] if prepare else result.documents
        if origin is not None:
            read = [document.model_copy(update={"origin": origin}) for document in read]

        # Ingests run one at a time; searches go on while one embeds (the mutex, which searches
        # take, is held only for short steps; they keep the BM25 index of the last complete
        # generation until the new one is swapped in).
        with self._ingest_lock:
            with self._mutex:
                store = self._open_for_write()
                embedder = self.embedder
                base = self._lexical_base()
            generation = int(store.state().get("generation", 0)) + 1
            documents = self._unique_documents(read, report)
            report.documents = len(documents)
            # Only a prune needs every stored document; otherwise look up the ones read.
            existing = self._stored_chunks(
                store, None if prune else [document.source_id for document in documents]
            )
            if origin is not None:
                documents = self._own_or_new(documents, existing, origin, report)
            plan = self._plan(documents, existing, embedder, report)
            self._check_limits(report, plan, max_documents, max_chunks)
            # Each chunk records the generation that wrote it: other processes sharing the
            # store fetch only what changed since their BM25 files (see _sync_lexical).
            for item in plan.pending:
                item.metadata["generation"] = generation
            for metadata in plan.relabel_metadata:
                metadata["generation"] = generation

            with self._mutex:
                self._ingesting = True
                self._start_generation(store, generation)
            try:
                embed_started = time.perf_counter()
                self._embed_and_store(store, embedder, plan.pending, len(documents), progress)
                report.embedding_seconds = time.perf_counter() - embed_started
                report.chunks_added = len(plan.pending)
                if plan.relabel_ids:
                    store.update_metadata(plan.relabel_ids, plan.relabel_metadata)
                if plan.stale_ids:
                    store.delete(plan.stale_ids)
                    report.chunks_removed += len(plan.stale_ids)
                if prune:
                    self._prune(store, documents, existing, result.failures, report)
                removed = plan.emptied or report.documents_removed > 0
                lexical = self._finish_ingest(store, base, generation, removed=removed)
            finally:
                with self._mutex:
                    self._ingesting = False
            report.index_chunks = len(lexical)
            report.index_documents = lexical.document_count
        report.seconds = time.perf_counter() - started
        return report

    @staticmethod
    def _start_generation(store: ChromaStore, generation: int | None = None) -> int:
        """Mark the store as being written by ``generation`` (default: the next one)."""
        if generation is None:
            generation = int(store.state().get("generation", 0)) + 1
        store.set_state(generation=generation, ingest_state=_STATE_RUNNING)
        return generation

    def _finish_ingest(
        self, store: ChromaStore, base: LexicalIndex | None, generation: int, *, removed: bool
    ) -> LexicalIndex:
        """Bring BM25 up to the store (a new segment), save it, mark ``generation`` complete.

        ``removed``: the ingest deleted chunks other than replaced ones (a prune, an emptied
        document), which readers find by comparing chunk ids.
        """
        state = store.set_state(removed_generation=generation) if removed else store.state()
        lexical = self._sync_lexical(store, base, state, complete=True)
        with self._mutex:
            self._save_lexical(lexical)
            store.set_state(ingest_state=_STATE_COMPLETE)
            self._lexical, self._lexical_key = lexical, (generation, True, None)
        return lexical

    @staticmethod
    def _unique_documents(documents: Sequence[Document], report: IngestReport) -> list[Document]:
        unique: dict[str, Document] = {}
        for document in documents:
            if document.source_id in unique:
                first = unique[document.source_id]
                report.warnings.append(
                    f"document {document.source_id} appears more than once (in {first.path} and "
                    f"{document.path}); the first copy is indexed"
                )
                continue
            unique[document.source_id] = document
        return list(unique.values())

    @staticmethod
    def _check_limits(
        report: IngestReport, plan: _Plan, max_documents: int | None, max_chunks: int | None
    ) -> None:
        if max_documents is not None and report.documents > max_documents:
            raise IngestLimitError(
                f"the input holds {report.documents} documents, over the limit of "
                f"{max_documents} per ingest; split it into smaller files"
            )
        if max_chunks is not None and len(plan.pending) > max_chunks:
            raise IngestLimitError(
                f"the input makes {len(plan.pending)} new passages, over the limit of "
                f"{max_chunks} per ingest; split it into smaller files"
            )

    @staticmethod
    def _own_or_new(
        documents: Sequence[Document],
        existing: Mapping[str, Mapping[str, Mapping[str, Any]]],
        origin: str,
        report: IngestReport,
    ) -> list[Document]:
        """The documents an ingest of ``origin`` may write: new ones and its own."""
        allowed = []
        for document in documents:
            stored = existing.get(document.source_id, {})
            owners = {meta.get("origin") for meta in stored.values()}
            if stored and owners != {origin}:
                report.documents_refused += 1
                report.warnings.append(
                    f"record {document.source_id} is already in the index from another source; "
                    "an upload cannot replace it, so it was kept as it was"
                )
                continue
            allowed.append(document)
        return allowed

    @staticmethod
    def _stored_chunks(
        store: ChromaStore, source_ids: Sequence[str] | None = None
    ) -> dict[str, dict[str, Mapping[str, Any]]]:
        """source id -> chunk id -> metadata, for the documents ``source_ids`` (None: all)."""
        existing: dict[str, dict[str, Mapping[str, Any]]] = {}
        records = (
            store.scan(texts=False)
            if source_ids is None
            else store.scan_sources(source_ids, texts=False)
        )
        for stored in records:
            existing.setdefault(stored.source_id, {})[stored.chunk_id] = stored.metadata
        return existing

    def _plan(
        self,
        documents: Sequence[Document],
        existing: Mapping[str, Mapping[str, Mapping[str, Any]]],
        embedder: Embedder,
        report: IngestReport,
    ) -> _Plan:
        from medgraph.knowledge.chunking import chunk_document

        max_tokens = embedder.max_tokens
        overlap = self.settings.chunk_overlap_sentences
        salt = json.dumps(
            {
                "identity": embedder.identity,
                "max_tokens": max_tokens,
                "overlap": overlap,
                "passage": PASSAGE_FORMAT,
            },
            sort_keys=True,
        )
        count_tokens = functools.lru_cache(maxsize=1 << 16)(embedder.count_tokens)
        plan = _Plan()
        for document in documents:
            doc_hash = _document_hash(document, salt)
            stored = existing.get(document.source_id, {})
            complete = bool(stored) and all(
                meta.get("doc_hash") == doc_hash and meta.get("n_chunks") == len(stored)
                for meta in stored.values()
            )
            if complete:
                report.documents_unchanged += 1
                report.chunks_unchanged += len(stored)
                continue
            chunks = chunk_document(document, count_tokens, max_tokens, overlap)
            if not chunks:
                report.warnings.append(f"document {document.source_id} has no text to index")
                plan.emptied = plan.emptied or bool(stored)
            changed = False
            for chunk in chunks:
                metadata = chunk_metadata(chunk, document, doc_hash=doc_hash, n_chunks=len(chunks))
                old = stored.get(chunk.chunk_id)
                if old is None:
                    plan.pending.append(_PendingChunk(chunk, metadata))
                    changed = True
                elif _same_position(old, metadata):
                    report.chunks_unchanged += 1
                else:
                    plan.relabel_ids.append(chunk.chunk_id)
                    plan.relabel_metadata.append(metadata)
                    report.chunks_updated += 1
                    changed = True
            new_ids = {chunk.chunk_id for chunk in chunks}
            stale = [chunk_id for chunk_id in stored if chunk_id not in new_ids]
            plan.stale_ids.extend(stale)
            if not stored:
                report.documents_added += 1
            elif changed or stale:
                report.documents_updated += 1
            else:
                report.documents_unchanged += 1
        return plan

    def _embed_and_store(
        self,
        store: ChromaStore,
        embedder: Embedder,
        pending: Sequence[_PendingChunk],
        document_total: int,
        progress: bool,
    ) -> None:
        batch_size = self.settings.batch_size
        window = batch_size * _SORT_WINDOW_BATCHES
        batches: list[list[_PendingChunk]] = []
        for start in range(0, len(pending), window):
            ordered = sorted(pending[start : start + window], key=lambda p: -len(p.chunk.text))
            batches.extend(
                ordered[offset : offset + batch_size]
                for offset in range(0, len(ordered), batch_size)
            )
        remaining: dict[str, int] = {}
        for item in pending:
            remaining[item.chunk.source_id] = remaining.get(item.chunk.source_id, 0) + 1
        documents_done = document_total - len(remaining)

        with _IngestProgress(len(pending), document_total, documents_done, enabled=progress) as bar:
            for batch in batches:
                texts = [item.chunk.text for item in batch]
                vectors = embedder.embed_documents(
                    [passage_text(_title(item.metadata), item.chunk.text) for item in batch]
                )
                store.add(
                    [item.chunk.chunk_id for item in batch],
                    vectors,
                    texts,
                    [item.metadata for item in batch],
                )
                finished = 0
                for item in batch:
                    remaining[item.chunk.source_id] -= 1
                    if remaining[item.chunk.source_id] == 0:
                        finished += 1
                bar.advance(len(batch), finished)

    def _prune(
        self,
        store: ChromaStore,
        documents: Sequence[Document],
        existing: Mapping[str, Mapping[str, Mapping[str, Any]]],
        failures: Sequence[ReadFailure],
        report: IngestReport,
    ) -> None:
        # A mistyped or unreadable input must not empty the index: prune only a clean read.
        if failures or not documents:
            reason = f"{len(failures)} input(s) could not be read" if failures else "no documents"
            report.warnings.append(
                f"prune skipped: {reason}; fix the inputs and run the ingest with --prune again"
            )
            return
        kept = {document.source_id for document in documents}
        doomed: list[str] = []
        for source_id, chunks in existing.items():
            if source_id not in kept:
                doomed.extend(chunks)
                report.documents_removed += 1
        if doomed:
            store.delete(doomed)
            report.chunks_removed += len(doomed)

    # -- search --------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        mode: SearchMode | str = "hybrid",
        where: Mapping[str, Any] | SearchFilter | None = None,
    ) -> list[Evidence]:
        """The ``k`` best passages for ``query``.

        ``mode``: ``dense`` (cosine over embeddings), ``lexical`` (BM25) or ``hybrid``: both
        retrievers run at once, each over a pool of ``4k`` chunks (at least 100); each pool becomes
        a ranking of documents (a document ranks where its best chunk does, with that chunk's score)
        and the two are merged by score fusion (``settings.fusion``: ``zscore``, see
        :func:`~medgraph.knowledge.fusion.zscore_fusion`, or ``rrf``). With ``zscore``,
        whole-document BM25 adds its own pool of documents and every candidate document gets its
        exact BM25 scores, best chunk and whole document (see :func:`_exact_lexical_runs`); a
        document that only whole-document BM25 pooled is shown by its best BM25 chunk. Passages
        come in document order: the best passage of each ranked document first, then their second
        passages, and so on. ``where`` restricts the search, see :class:`SearchFilter`. Each
        evidence's ``scores`` holds the per-retriever scores and ranks its chunk got (``dense``,
        ``dense_rank``, ``lexical``, ``lexical_rank``), its document's fused score (``fused``)
        and ``rerank``; in hybrid mode ``score`` is the document's fused score.
        """
        if mode not in SEARCH_MODES:
            raise InvalidQueryError(
                f"unknown search mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}"
            )
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidQueryError(f"k must be a positive integer, got {k!r}")
        if not isinstance(query, str) or not query.strip():
            raise InvalidQueryError("the search query is empty; give some words to search for")
        search_filter = SearchFilter.parse(where)
        store = self._open_for_read()
        reranker = self._active_reranker()
        wanted = max(3 * k, 20) if reranker is not None else k
        depth = max(4 * wanted, _FUSION_POOL) if mode == "hybrid" else wanted

        # Hybrid search ranks 4x more candidates than it returns: it fetches ids and scores
        # only, takes their documents from the BM25 chunk table, and reads the records (texts,
        # metadata) of the chunks it returns. An origins filter needs every candidate's record.
        lean = mode == "hybrid" and search_filter.origins is None
        lexical: LexicalIndex | None = None
        lexical_run: Callable[[], _LexicalResult] | None = None
        lexical_job: Future[_LexicalResult] | None = None
        bm25_job: Future[_Bm25Side] | None = None
        masks: _FilterMasks | None = None
        query_terms = tokenize(query)
        if mode in ("lexical", "hybrid"):
            lexical = self._lexical_index(store)
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
            vector = self.embedder.embed_queries([query])[0]
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

        missing = [chunk_id for chunk_id, _ in ordered if chunk_id not in records]
        if missing:
            records.update(store.get(missing))
            # a chunk deleted since it was ranked (a concurrent prune) is left out
            ordered = [(chunk_id, score) for chunk_id, score in ordered if chunk_id in records]
        # Counting is a store round trip: it is done only when a search finds nothing.
        if not ordered and store.count() == 0:
            raise self._missing("the index holds no chunks")
        if reranker is not None and ordered:
            passages = [records[chunk_id].text for chunk_id, _ in ordered]
            rerank_scores = [float(s) for s in reranker(query, passages)]
            if len(rerank_scores) != len(passages):
                raise ConfigurationError(
                    f"the reranker returned {len(rerank_scores)} scores for {len(passages)} "
                    f"passages; it must return one score per passage"
                )
            for (chunk_id, _), rerank_score in zip(ordered, rerank_scores, strict=True):
                scores[chunk_id]["rerank"] = rerank_score
            ordered = sorted(
                ((chunk_id, scores[chunk_id]["rerank"]) for chunk_id, _ in ordered),
                key=lambda pair: -pair[1],
            )
        return [
            evidence_from_stored(records[chunk_id], score, scores[chunk_id])
            for chunk_id, score in ordered[:k]
        ]

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

    def _active_reranker(self) -> Reranker | None:
        if self._reranker is None and self.settings.reranker_model:
            self._reranker = _cross_encoder(self.settings.reranker_model)
        return self._reranker

    # -- inspection ----------------------------------------------------------------------------

    def get_document(self, source_id: str) -> Document | None:
        """The stored metadata of document ``source_id`` (``text`` empty), or None if absent."""
        records = self._open_for_read().get_where({"source_id": source_id})
        return document_from_metadata(records[0].metadata) if records else None

    def get_chunks(self, source_id: str) -> list[Chunk]:
        """The stored chunks of document ``source_id`` in document order."""
        records = self._open_for_read().get_where({"source_id": source_id})
        return sorted((chunk_from_stored(record) for record in records), key=lambda c: c.index)

    def stats(self) -> IndexStats:
        """Documents, chunks and the embedding model of the index."""
        store = self._open_for_read()
        state = store.state()
        lexical = self._lexical_index(store)
        return IndexStats(
            index_dir=str(self.index_dir),
            location=self.location,
            collection=self.settings.collection,
            embedding_model=str(state.get("embedding_model", "")),
            documents=lexical.document_count,
            chunks=store.count(),
            generation=int(state.get("generation", 0)),
        )


def _cross_encoder(model_name: str) -> Reranker:
    """A reranker over a sentence-transformers cross-encoder (loaded now)."""
    from medgraph.knowledge.embeddings import resolve_model_source
    from medgraph.loading import MODEL_LOAD_LOCK

    try:
        with MODEL_LOAD_LOCK:
            from sentence_transformers import CrossEncoder

            model = CrossEncoder(resolve_model_source(model_name))
    except Exception as error:
        from medgraph.errors import ModelLoadError

        raise ModelLoadError(
            f"could not load reranker model {model_name!r}: {error}; give a local folder or a "
            f"Hub id in the local cache, or unset knowledge.reranker_model"
        ) from error

    def rerank(query: str, passages: Sequence[str]) -> Sequence[float]:
        return [float(score) for score in model.predict([(query, p) for p in passages])]

    return rerank


class _IngestProgress:
    """A rich progress bar with chunks/s and documents/s (no-op when disabled or nothing to do)."""

    def __init__(self, chunks: int, documents: int, documents_done: int, *, enabled: bool):
        self.enabled = enabled and chunks > 0
        self.chunks_total = chunks
        self.documents_total = documents
        self.documents_done = documents_done
        self.chunks_done = 0
        self.started = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _IngestProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]embedding"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("chunks"),
                TextColumn("{task.fields[rates]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.start()
            self._task = self._progress.add_task("ingest", total=self.chunks_total, rates="")
        return self

    def advance(self, chunks: int, documents: int) -> None:
        """Record ``chunks`` more chunks and ``documents`` more finished documents."""
        self.chunks_done += chunks
        self.documents_done += documents
        if self._progress is not None:
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            rates = (
                f"{self.chunks_done / elapsed:.1f} chunks/s "
                f"{self.documents_done}/{self.documents_total} docs "
                f"{self.documents_done / elapsed:.1f} docs/s"
            )
            self._progress.update(self._task, advance=chunks, rates=rates)

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()


__all__ = [
    "SEARCH_MODES",
    "IndexStats",
    "IngestReport",
    "InvalidQueryError",
    "LiteratureIndex",
    "Reranker",
    "SearchFilter",
    "SearchMode",
]
