"""The literature index: ingest files into a store and search them (dense, lexical, hybrid).

Two stores sit behind one API (``knowledge.store``):

- ``chroma`` (the default): an embedded Chroma store in ``index_dir`` (or a Chroma server with
  ``chroma_url``) and medgraph's BM25 segments beside it (:mod:`~medgraph.knowledge.chroma_search`).
- ``milvus``: Milvus Lite (a ``.db`` folder, by default ``index_dir/milvus.db``) or a Milvus
  server, holding texts, metadata, vectors and its own BM25
  (:mod:`~medgraph.knowledge.milvus_search`).

Layout of ``index_dir``::

    chroma/ or milvus.db/   the store when it is local (embedded Chroma, Milvus Lite)
    bm25/                   BM25 segments and a current.json pointer (Chroma store only)
    index.json              embedding model, store and collection that built the index
    write.lock              held by the one process allowed to write a local store

Ingest is incremental and resumable on both stores (:mod:`~medgraph.knowledge.ingest_plan`):
chunk ids are content hashes, chunks already stored are not embedded again, and new chunks are
committed in batches, so re-running an interrupted ingest (even one killed with SIGKILL) finishes
the job with every chunk stored exactly once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from medgraph.errors import ConfigurationError, IndexUnavailableError
from medgraph.knowledge.chroma_store import ChromaStore
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.embeddings import vector_family
from medgraph.knowledge.ingest_plan import (
    IngestLimitError,
    IngestProgress,
    IngestReport,
    check_limits,
    embed_and_store,
    own_or_new,
    plan_imported,
    plan_ingest,
    prune_missing,
    stored_chunks,
    unique_documents,
)
from medgraph.knowledge.milvus_store import MilvusStore, is_local_uri
from medgraph.knowledge.search import SEARCH_MODES, Searcher, SearchMode
from medgraph.knowledge.search_filter import InvalidQueryError, SearchFilter
from medgraph.knowledge.store import (
    STATE_COMPLETE,
    STATE_RUNNING,
    STORE_FORMAT,
    ChunkStore,
    MetadataValue,
    chunk_from_stored,
    document_from_metadata,
    evidence_from_stored,
)
from medgraph.knowledge.types import Chunk, Document, Evidence

if TYPE_CHECKING:
    from filelock import FileLock

    from medgraph.knowledge.embeddings import Embedder
    from medgraph.knowledge.vector_import import VectorSource

Reranker = Callable[[str, Sequence[str]], Sequence[float]]
"""Scores (higher is better) for ``(query, passages)``; e.g. a cross-encoder."""

_RECORD = "index.json"
_LOCK = "write.lock"
_PID = "write.pid"

# Hybrid search fuses pools of at least this many chunks per retriever, whatever ``k``: score
# fusion standardises each retriever's scores over its pool, so the pool is fixed rather than
# tied to k (BioASQ dev, hybrid MRR@10: 0.901 with pools of 40 chunks, 0.914 with 120).
_FUSION_POOL = 100


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


class LiteratureIndex:
    """Hybrid (dense + BM25) search over a literature collection in Chroma or Milvus.

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
        self._store: ChromaStore | MilvusStore | None = None
        self._searcher: Searcher | None = None
        self._write_lock: FileLock | None = None
        self._mutex = threading.RLock()
        self._ingest_lock = threading.Lock()

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
            if self._searcher is not None:
                self._searcher.close()
                self._searcher = None
            if self._store is not None:
                self._store.close()
                self._store = None
            if self._write_lock is not None:
                (self.index_dir / _PID).unlink(missing_ok=True)
                self._write_lock.release(force=True)
                self._write_lock = None

    @property
    def milvus(self) -> bool:
        """True when the index lives in Milvus (``knowledge.store = "milvus"``)."""
        return self.settings.store == "milvus"

    @property
    def embedded(self) -> bool:
        """True for a store inside this process (embedded Chroma, a Milvus Lite ``.db``)."""
        if self.milvus:
            return is_local_uri(self.settings.resolved_milvus_uri())
        return self.settings.chroma_url is None

    @property
    def location(self) -> str:
        """The index folder, or the server (and, for Chroma, the local BM25 folder)."""
        if self.milvus:
            return (
                f"{self.settings.resolved_milvus_uri()} (Milvus collection "
                f"{self.settings.collection})"
            )
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

    def _new_store(self) -> ChromaStore | MilvusStore:
        settings = self.settings
        if self.milvus:
            token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
            return MilvusStore(
                uri=settings.resolved_milvus_uri(),
                collection=settings.collection,
                token=token,
                index_type=settings.milvus_index_type,
                index_params=settings.milvus_index_params,
            )
        if self.embedded:
            return ChromaStore(collection=settings.collection, path=self.index_dir / "chroma")
        return ChromaStore(collection=settings.collection, url=settings.chroma_url)

    def _new_searcher(self, store: ChromaStore | MilvusStore) -> Searcher:
        if isinstance(store, MilvusStore):
            from medgraph.knowledge.milvus_search import MilvusSearch

            return MilvusSearch(store, self.settings, self._mutex)
        from medgraph.knowledge.chroma_search import ChromaSearch

        return ChromaSearch(store, self.settings, self.index_dir, self.location, self._mutex)

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
        # Imported vectors name the query encoder that matches them (MedCPT's articles need
        # MedCPT's query encoder); an embedder that says which query model it runs must match.
        stored_query = state.get("query_embedding_model")
        model = getattr(self.embedder, "model_name", None)
        query_model = getattr(self.embedder, "query_model_name", None) or model
        if stored_query and query_model is not None and query_model != stored_query:
            raise ConfigurationError(
                f"the index at {self.location} holds vectors that {stored_query!r} must encode "
                f"queries for, but the settings encode queries with {query_model!r}; set "
                f"knowledge.query_embedding_model={stored_query}"
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

    def _open_for_read(self) -> ChromaStore | MilvusStore:
        with self._mutex:
            if self._store is not None:
                return self._store
            if (
                self.embedded
                and not self.milvus
                and not (self.index_dir / "chroma" / "chroma.sqlite3").is_file()
            ):
                raise self._missing("the folder holds no index")
            store = self._new_store()
            if not store.collection_exists():
                raise self._missing(f"collection {self.settings.collection!r} does not exist")
            self._check_identity(store.state())
            self._store = store
            self._searcher = self._new_searcher(store)
            return store

    def _open_searcher(self) -> Searcher:
        self._open_for_read()
        assert self._searcher is not None
        return self._searcher

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
            server = "a Milvus server (knowledge.milvus_uri)" if self.milvus else "a Chroma server"
            server += "" if self.milvus else " (knowledge.chroma_url)"
            raise IndexUnavailableError(
                f"index {self.index_dir} is in use by {holder} (pid {pid or 'unknown'}); wait "
                f"for it or use {server} so several processes can share one index"
            ) from None
        (self.index_dir / _PID).write_text(str(os.getpid()))
        self._write_lock = lock

    def _open_for_write(
        self, record: Mapping[str, MetadataValue] | None = None
    ) -> ChromaStore | MilvusStore:
        """The store, opened for writing; ``record`` as for :meth:`_create_store`."""
        with self._mutex:
            held_before = self._write_lock is not None
            if self.embedded:
                self._acquire_write_lock()
            try:
                return self._create_store(record)
            except BaseException:
                if not held_before and self._write_lock is not None:
                    (self.index_dir / _PID).unlink(missing_ok=True)
                    self._write_lock.release(force=True)
                    self._write_lock = None
                raise

    def _create_store(
        self, record: Mapping[str, MetadataValue] | None = None
    ) -> ChromaStore | MilvusStore:
        """Open (or create) the collection for writing and check it suits the vectors.

        ``record`` names the vectors' encoder (``embedding_model``, ``dimension``, ...) when they
        come from elsewhere (imported); by default it is the embedder's.
        """
        with self._mutex:
            store = self._store or self._new_store()
            if record is None:
                embedder = self.embedder
                dimension = embedder.dimension  # loads the model, which settles its backend
                backend = getattr(embedder, "backend", None)
                record = {
                    **embedder.identity,
                    **({"embedding_backend": backend} if backend else {}),
                    "dimension": dimension,
                }
            store.create(
                {
                    "medgraph_format": STORE_FORMAT,
                    **record,
                    "generation": 0,
                    "ingest_state": STATE_COMPLETE,
                }
            )
            state = store.state()
            self._check_written_by(state, record)
            if self._store is None:
                self._store = store
                self._searcher = self._new_searcher(store)
            saved = {
                "format": STORE_FORMAT,
                **{key: value for key, value in record.items() if key != "embedding_backend"},
                "embedding_backend": str(state.get("embedding_backend", "torch")),
                "store": self.settings.store,
                "collection": self.settings.collection,
                "chroma_url": self.settings.chroma_url,
                "milvus_uri": self.settings.resolved_milvus_uri() if self.milvus else None,
            }
            self.index_dir.mkdir(parents=True, exist_ok=True)
            (self.index_dir / _RECORD).write_text(json.dumps(saved, indent=2) + "\n")
            return store

    def _check_written_by(
        self, state: Mapping[str, Any], record: Mapping[str, MetadataValue]
    ) -> None:
        """Refuse to add vectors of another encoder or size than the store holds."""
        if "query_embedding_model" not in record:
            self._check_identity(state)
        else:
            for key in ("embedding_model", "query_embedding_model"):
                if state.get(key) not in (None, record[key]):
                    raise ConfigurationError(
                        f"the index at {self.location} holds vectors of {key} "
                        f"{state.get(key)!r}, not {record[key]!r}; import into a new --index "
                        f"folder"
                    )
        metric = str(record.get("metric", "cosine"))
        if str(state.get("metric", "cosine")) != metric:
            raise ConfigurationError(
                f"the index at {self.location} ranks by {state.get('metric', 'cosine')} "
                f"similarity but these vectors are meant for {metric}; import into a new "
                f"--index folder"
            )
        stored_dimension = state.get("dimension")
        if stored_dimension is not None and int(stored_dimension) != int(record["dimension"]):
            raise ConfigurationError(
                f"the index at {self.location} holds {stored_dimension}-dimensional vectors "
                f"but these are {record['dimension']}-dimensional; ingest into a new --index "
                f"folder"
            )

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
        # take, is held only for short steps; on the Chroma store they keep the BM25 index of the
        # last complete generation until the new one is swapped in).
        with self._ingest_lock:
            with self._mutex:
                store = self._open_for_write()
                embedder = self.embedder
                searcher = self._open_searcher()
                searcher.start_ingest()
            generation = int(store.state().get("generation", 0)) + 1
            documents = unique_documents(read, report)
            report.documents = len(documents)
            # Only a prune needs every stored document; otherwise look up the ones read.
            existing = stored_chunks(
                store, None if prune else [document.source_id for document in documents]
            )
            if origin is not None:
                documents = own_or_new(documents, existing, origin, report)
            plan = plan_ingest(
                documents,
                existing,
                embedder,
                report,
                overlap=self.settings.chunk_overlap_sentences,
            )
            check_limits(report, plan, max_documents, max_chunks)
            # Each chunk records the generation that wrote it: other processes sharing the
            # store fetch only what changed since their BM25 files (see chroma_search).
            for item in plan.pending:
                item.metadata["generation"] = generation
            for metadata in plan.relabel_metadata:
                metadata["generation"] = generation

            with self._mutex:
                searcher.ingesting = True
                self.start_generation(store, generation)
            try:
                embed_started = time.perf_counter()
                embed_and_store(
                    store,
                    embedder,
                    plan.pending,
                    len(documents),
                    progress,
                    batch_size=self.settings.batch_size,
                )
                report.embedding_seconds = time.perf_counter() - embed_started
                report.chunks_added = len(plan.pending)
                if plan.relabel_ids:
                    store.update_metadata(plan.relabel_ids, plan.relabel_metadata)
                if plan.stale_ids:
                    store.delete(plan.stale_ids)
                    report.chunks_removed += len(plan.stale_ids)
                if prune:
                    prune_missing(store, documents, existing, result.failures, report)
                removed = plan.emptied or report.documents_removed > 0
                report.index_chunks, report.index_documents = searcher.finish_ingest(
                    generation, removed=removed
                )
            finally:
                with self._mutex:
                    searcher.ingesting = False
        report.seconds = time.perf_counter() - started
        return report

    def import_vectors(
        self, source: VectorSource, *, progress: bool = True, batch_size: int = 1000
    ) -> IngestReport:
        """Store precomputed vectors (e.g. MedCPT's PubMed embeddings) without embedding anything.

        Each record becomes one chunk holding its whole text. The index records the encoder that
        made the vectors, the query encoder that matches them and the similarity they rank by
        (MedCPT's: the inner product); a later search whose settings encode queries with another
        model is refused. Records already stored are skipped, so a
        rerun after an interrupted import (even kill -9) adds only what is missing.
        """
        from medgraph.knowledge.vector_import import VectorImportError

        if not source.document_encoder:
            raise VectorImportError(
                f"{source.path}: the vectors do not say which encoder made them; name it with "
                f"--encoder (the model whose vectors these are)"
            )
        record: dict[str, MetadataValue] = {
            "embedding_model": source.document_encoder,
            "document_prefix": "",
            "query_embedding_model": source.query_encoder or source.document_encoder,
            "embedding_backend": "torch",
            "dimension": source.dimension,
            "metric": source.metric,
        }
        started = time.perf_counter()
        report = IngestReport(files=len(source.files))
        with self._ingest_lock:
            with self._mutex:
                store = self._open_for_write(record)
                searcher = self._open_searcher()
                searcher.start_ingest()
                searcher.ingesting = True
                generation = self.start_generation(store)
            try:
                with IngestProgress(
                    source.total, source.total, 0, enabled=progress, label="importing"
                ) as bar:
                    for batch in source.batches(batch_size):
                        report.documents += len(batch)
                        existing = stored_chunks(store, [item.document.source_id for item in batch])
                        plan, vectors = plan_imported(batch, existing, report)
                        for item in plan.pending:
                            item.metadata["generation"] = generation
                        if plan.pending:
                            store.add(
                                [item.chunk.chunk_id for item in plan.pending],
                                vectors,
                                [item.chunk.text for item in plan.pending],
                                [item.metadata for item in plan.pending],
                            )
                        if plan.stale_ids:
                            store.delete(plan.stale_ids)
                            report.chunks_removed += len(plan.stale_ids)
                        report.chunks_added += len(plan.pending)
                        bar.advance(len(batch), len(batch))
                report.warnings.extend(source.warnings)
                report.embedding_seconds = time.perf_counter() - started
                report.index_chunks, report.index_documents = searcher.finish_ingest(
                    generation, removed=False
                )
            finally:
                with self._mutex:
                    searcher.ingesting = False
        report.seconds = time.perf_counter() - started
        return report

    @staticmethod
    def start_generation(store: ChunkStore, generation: int | None = None) -> int:
        """Mark ``store`` as being written by ``generation`` (default: the next one)."""
        if generation is None:
            generation = int(store.state().get("generation", 0)) + 1
        store.set_state(generation=generation, ingest_state=STATE_RUNNING)
        return generation

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
        retrievers run, each over a pool of ``4k`` chunks (at least 100); each pool becomes a
        ranking of documents (a document ranks where its best chunk does, with that chunk's score)
        and the two are merged by fusion (``settings.fusion``: ``zscore``, see
        :func:`~medgraph.knowledge.fusion.zscore_fusion`, ``rrf``, or on Milvus ``weighted``). On
        the Chroma store with ``zscore``, whole-document BM25 adds its own pool of documents and
        every candidate document gets its exact BM25 scores (see
        :mod:`~medgraph.knowledge.chroma_search`). Passages come in document order: the best
        passage of each ranked document first, then their second passages, and so on. ``where``
        restricts the search, see :class:`SearchFilter`. Each evidence's ``scores`` holds the
        per-retriever scores and ranks its chunk got (``dense``, ``dense_rank``, ``lexical``,
        ``lexical_rank``), its document's fused score (``fused``) and ``rerank``; in hybrid mode
        ``score`` is the document's fused score.
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
        searcher = self._open_searcher()
        reranker = self._active_reranker()
        wanted = max(3 * k, 20) if reranker is not None else k
        depth = max(4 * wanted, _FUSION_POOL) if mode == "hybrid" else wanted

        def embed_query(text: str) -> Any:
            return self.embedder.embed_queries([text])[0]

        ordered, records, scores = searcher.rank(
            query, embed_query, cast(SearchMode, mode), wanted, depth, search_filter
        )
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

    def _active_reranker(self) -> Reranker | None:
        if self._reranker is None and self.settings.reranker_model:
            self._reranker = _cross_encoder(self.settings.reranker_model)
        return self._reranker

    # -- inspection ----------------------------------------------------------------------------

    def get_document(self, source_id: str) -> Document | None:
        """The stored metadata of document ``source_id`` (``text`` empty), or None if absent."""
        records = list(self._open_for_read().scan_sources([source_id], texts=False))
        return document_from_metadata(records[0].metadata) if records else None

    def get_chunks(self, source_id: str) -> list[Chunk]:
        """The stored chunks of document ``source_id`` in document order."""
        records = self._open_for_read().scan_sources([source_id], texts=True)
        return sorted((chunk_from_stored(record) for record in records), key=lambda c: c.index)

    def stats(self) -> IndexStats:
        """Documents, chunks and the embedding model of the index."""
        store = self._open_for_read()
        state = store.state()
        return IndexStats(
            index_dir=str(self.index_dir),
            location=self.location,
            collection=self.settings.collection,
            embedding_model=str(state.get("embedding_model", "")),
            documents=self._open_searcher().document_count(),
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


__all__ = [
    "SEARCH_MODES",
    "IndexStats",
    "IngestLimitError",
    "IngestReport",
    "InvalidQueryError",
    "LiteratureIndex",
    "Reranker",
    "SearchFilter",
    "SearchMode",
]
