"""Ingest planning: which chunks an ingest embeds, re-labels or deletes, and its report.

Shared by every store and by the Ray ingest: chunk ids are content hashes and each chunk records
its document's hash and chunk count, so a document whose chunks are all stored unchanged is
skipped, and an interrupted ingest resumes by embedding only what is missing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medgraph.errors import IngestError
from medgraph.knowledge.chunking import PASSAGE_FORMAT, passage_text
from medgraph.knowledge.store import ChunkStore, Metadata, chunk_metadata
from medgraph.knowledge.types import Chunk, Document

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from medgraph.knowledge.embeddings import Embedder
    from medgraph.knowledge.readers import ReadFailure
    from medgraph.knowledge.vector_import import ImportedRecord

# Chunks are sorted by length inside windows of this many batches: batches of similar length pad
# less, while documents still finish (and the progress bar's documents/s moves) in input order.
_SORT_WINDOW_BATCHES = 16


class IngestLimitError(IngestError):
    """One ingest holds more documents or passages than its caller allows."""


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


@dataclass
class PendingChunk:
    """A chunk to embed and store, with the metadata record it is stored under."""

    chunk: Chunk
    metadata: Metadata


@dataclass
class IngestPlan:
    """The work an ingest found: chunks to embed, metadata to refresh, ids to delete."""

    pending: list[PendingChunk] = field(default_factory=list)
    relabel_ids: list[str] = field(default_factory=list)
    relabel_metadata: list[Metadata] = field(default_factory=list)
    stale_ids: list[str] = field(default_factory=list)
    emptied: bool = False
    """A stored document lost all its chunks (its stale chunks belong to no new chunk)."""


def document_hash(document: Document, salt: str) -> str:
    """A document's content hash under ``salt`` (what changes its chunks or their vectors)."""
    # Without an origin the hash is what it was before origins existed (no re-labelling).
    payload = (
        salt
        + "\x00"
        + document.model_dump_json(exclude={"origin"} if not document.origin else None)
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def stored_title(metadata: Mapping[str, Any]) -> str | None:
    """The title a stored chunk record carries, if any."""
    title = metadata.get("title")
    return title if isinstance(title, str) else None


def _same_position(stored: Mapping[str, Any], wanted: Metadata) -> bool:
    return all(stored.get(key) == wanted.get(key) for key in wanted)


def unique_documents(documents: Sequence[Document], report: IngestReport) -> list[Document]:
    """``documents`` without repeated source ids (the first copy is kept, the rest warned of)."""
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


def check_limits(
    report: IngestReport, plan: IngestPlan, max_documents: int | None, max_chunks: int | None
) -> None:
    """Raise :class:`IngestLimitError` when the ingest is over either limit (None: no limit)."""
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


def own_or_new(
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


def stored_chunks(
    store: ChunkStore, source_ids: Sequence[str] | None = None
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


def plan_ingest(
    documents: Sequence[Document],
    existing: Mapping[str, Mapping[str, Mapping[str, Any]]],
    embedder: Embedder,
    report: IngestReport,
    *,
    overlap: int,
) -> IngestPlan:
    """Chunk each changed document and sort its chunks into new, re-labelled and stale ones.

    ``existing`` is :func:`stored_chunks` of the documents; ``overlap`` the chunker's sentences
    of overlap. Counts go into ``report``.
    """
    from medgraph.knowledge.chunking import chunk_document

    max_tokens = embedder.max_tokens
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
    plan = IngestPlan()
    for document in documents:
        doc_hash = document_hash(document, salt)
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
                plan.pending.append(PendingChunk(chunk, metadata))
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


def plan_imported(
    records: Sequence[ImportedRecord],
    existing: Mapping[str, Mapping[str, Mapping[str, Any]]],
    report: IngestReport,
) -> tuple[IngestPlan, npt.NDArray[np.float32]]:
    """What an import of precomputed vectors stores: one chunk per record (its whole text).

    Returns the plan and the vectors of its pending chunks, in order. A record stored already
    with the same content is skipped; a changed record replaces its old chunk.
    """
    import numpy as np

    from medgraph.knowledge.chunking import chunk_id

    plan = IngestPlan()
    vectors = []
    for record in records:
        document = record.document
        doc_hash = document_hash(document, "imported")
        stored = existing.get(document.source_id, {})
        chunk = Chunk(
            chunk_id=chunk_id(document.source_id, passage_text(document.title, document.text)),
            source_id=document.source_id,
            index=0,
            text=document.text,
            start=0,
            end=len(document.text),
        )
        old = stored.get(chunk.chunk_id)
        if old is not None and old.get("doc_hash") == doc_hash and len(stored) == 1:
            report.documents_unchanged += 1
            report.chunks_unchanged += 1
            continue
        plan.pending.append(
            PendingChunk(chunk, chunk_metadata(chunk, document, doc_hash=doc_hash, n_chunks=1))
        )
        vectors.append(np.asarray(record.vector, dtype=np.float32))
        plan.stale_ids.extend(stored_id for stored_id in stored if stored_id != chunk.chunk_id)
        if stored:
            report.documents_updated += 1
        else:
            report.documents_added += 1
    dimension = records[0].vector.shape[0] if records else 0
    matrix = np.stack(vectors) if vectors else np.zeros((0, dimension), dtype=np.float32)
    return plan, matrix


def embed_and_store(
    store: ChunkStore,
    embedder: Embedder,
    pending: Sequence[PendingChunk],
    document_total: int,
    progress: bool,
    *,
    batch_size: int,
) -> None:
    """Embed ``pending`` and add it to ``store``, ``batch_size`` chunks per committed batch."""
    window = batch_size * _SORT_WINDOW_BATCHES
    batches: list[list[PendingChunk]] = []
    for start in range(0, len(pending), window):
        ordered = sorted(pending[start : start + window], key=lambda p: -len(p.chunk.text))
        batches.extend(
            ordered[offset : offset + batch_size] for offset in range(0, len(ordered), batch_size)
        )
    remaining: dict[str, int] = {}
    for item in pending:
        remaining[item.chunk.source_id] = remaining.get(item.chunk.source_id, 0) + 1
    documents_done = document_total - len(remaining)

    with IngestProgress(len(pending), document_total, documents_done, enabled=progress) as bar:
        for batch in batches:
            texts = [item.chunk.text for item in batch]
            vectors = embedder.embed_documents(
                [passage_text(stored_title(item.metadata), item.chunk.text) for item in batch]
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


def prune_missing(
    store: ChunkStore,
    documents: Sequence[Document],
    existing: Mapping[str, Mapping[str, Mapping[str, Any]]],
    failures: Sequence[ReadFailure],
    report: IngestReport,
) -> None:
    """Delete the stored documents not among ``documents`` (only after a clean read)."""
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


class IngestProgress:
    """A rich progress bar with chunks/s and documents/s (no-op when disabled or nothing to do)."""

    def __init__(
        self,
        chunks: int,
        documents: int,
        documents_done: int,
        *,
        enabled: bool,
        label: str = "embedding",
    ):
        self.enabled = enabled and chunks > 0
        self.label = label
        self.chunks_total = chunks
        self.documents_total = documents
        self.documents_done = documents_done
        self.chunks_done = 0
        self.started = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> IngestProgress:
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
                TextColumn(f"[bold]{self.label}"),
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
