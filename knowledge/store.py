"""What the literature index needs from a vector store, and the chunk records every store keeps.

Every chunk is stored with its text and a flat metadata record (document fields, section, page,
character span) so :class:`~medgraph.knowledge.types.Evidence` can be rebuilt from a hit alone.
Two stores implement :class:`ChunkStore`: Chroma (:mod:`~medgraph.knowledge.chroma_store`, the
default) and Milvus (:mod:`~medgraph.knowledge.milvus_store`, the scale store). A store's own
state record holds the embedding model that made its vectors, the index's generation counter and
whether an ingest is running.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from medgraph.knowledge.chunking import passage_text
from medgraph.knowledge.types import Chunk, Document, Evidence

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MetadataValue = str | int | float | bool
Metadata = dict[str, MetadataValue]

STORE_FORMAT = 1
STATE_COMPLETE = "complete"
"""``ingest_state`` of a store whose last ingest finished."""
STATE_RUNNING = "running"
"""``ingest_state`` while an ingest writes (or after one died)."""
AUTHOR_SEPARATOR = "; "


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as the store holds it: id, text and flat metadata."""

    chunk_id: str
    text: str
    metadata: Mapping[str, Any]

    @property
    def source_id(self) -> str:
        """The chunk's document id."""
        return str(self.metadata.get("source_id", ""))


def chunk_metadata(chunk: Chunk, document: Document, *, doc_hash: str, n_chunks: int) -> Metadata:
    """The flat metadata record stored with ``chunk`` (Chroma accepts no None values)."""
    record: Metadata = {
        "source_id": document.source_id,
        "index": chunk.index,
        "start": chunk.start,
        "end": chunk.end,
        "doc_hash": doc_hash,
        "n_chunks": n_chunks,
    }
    optional: dict[str, MetadataValue | None] = {
        "title": document.title,
        "year": document.year,
        "journal": document.journal,
        "pmid": document.pmid,
        "doi": document.doi,
        "url": document.url,
        "licence": document.licence,
        "path": document.path,
        "origin": document.origin,
        "authors": AUTHOR_SEPARATOR.join(document.authors) if document.authors else None,
        "section": chunk.section,
        "page": chunk.page,
    }
    record.update({key: value for key, value in optional.items() if value is not None})
    return record


def _optional_str(metadata: Mapping[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    return None if value is None or value == "" else str(value)


def _optional_int(metadata: Mapping[str, Any], key: str) -> int | None:
    value = metadata.get(key)
    return None if value is None else int(value)


def document_from_metadata(metadata: Mapping[str, Any]) -> Document:
    """The document's metadata (``text`` empty) from a stored chunk record."""
    authors = _optional_str(metadata, "authors")
    return Document(
        source_id=str(metadata["source_id"]),
        title=_optional_str(metadata, "title"),
        authors=tuple(authors.split(AUTHOR_SEPARATOR)) if authors else (),
        year=_optional_int(metadata, "year"),
        journal=_optional_str(metadata, "journal"),
        pmid=_optional_str(metadata, "pmid"),
        doi=_optional_str(metadata, "doi"),
        url=_optional_str(metadata, "url"),
        licence=_optional_str(metadata, "licence"),
        path=_optional_str(metadata, "path"),
        origin=_optional_str(metadata, "origin"),
    )


def chunk_from_stored(stored: StoredChunk) -> Chunk:
    """The :class:`Chunk` a stored record describes."""
    metadata = stored.metadata
    return Chunk(
        chunk_id=stored.chunk_id,
        source_id=str(metadata["source_id"]),
        index=int(metadata.get("index", 0)),
        text=stored.text,
        start=int(metadata.get("start", 0)),
        end=int(metadata.get("end", len(stored.text))),
        section=_optional_str(metadata, "section"),
        page=_optional_int(metadata, "page"),
    )


def evidence_from_stored(
    stored: StoredChunk, score: float, scores: Mapping[str, float] | None = None
) -> Evidence:
    """Evidence for a hit: the chunk, its document's metadata and the retrieval scores."""
    return Evidence(
        chunk=chunk_from_stored(stored),
        document=document_from_metadata(stored.metadata),
        score=score,
        scores=dict(scores or {}),
    )


def document_text(chunks: Sequence[StoredChunk]) -> str:
    """A whole document for document-level BM25, from its stored chunks: its title line, then
    the text its chunks cover (each overlap between neighbouring chunks once)."""
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
    title = ordered[0].metadata.get("title")
    return passage_text(title if isinstance(title, str) else None, "\n".join(parts))


class ChunkStore(Protocol):
    """The storage operations ingest and inspection use, the same for every store.

    Searching differs by store (Chroma beside medgraph's BM25 files, Milvus with its own BM25)
    and lives with each store's searcher.
    """

    @property
    def location(self) -> str:
        """Where the store lives, for messages."""
        ...

    @property
    def collection_id(self) -> str:
        """An id of the collection that changes when it is dropped and made again."""
        ...

    def collection_exists(self) -> bool:
        """Whether the collection exists (never creates anything)."""
        ...

    def create(self, metadata: Metadata) -> None:
        """Open the collection, creating it with the state record ``metadata`` when missing."""
        ...

    def close(self) -> None:
        """Let go of the connection."""
        ...

    def state(self) -> dict[str, Any]:
        """The collection's state record as the store holds it now."""
        ...

    def set_state(self, **updates: MetadataValue) -> dict[str, Any]:
        """Merge ``updates`` into the state record; returns the merged record."""
        ...

    def count(self) -> int:
        """Chunks in the collection."""
        ...

    def add(
        self,
        ids: Sequence[str],
        embeddings: npt.NDArray[np.float32],
        texts: Sequence[str],
        metadatas: Sequence[Metadata],
    ) -> None:
        """Store chunks; a chunk id already stored keeps a single copy."""
        ...

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[Metadata]) -> None:
        """Replace the metadata of stored chunks, keeping their texts and vectors."""
        ...

    def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id (ids not stored are ignored)."""
        ...

    def get(self, ids: Sequence[str]) -> dict[str, StoredChunk]:
        """Stored chunks by id (missing ids are absent from the result)."""
        ...

    def scan(self, *, texts: bool) -> Iterator[StoredChunk]:
        """Every stored chunk, page by page (texts empty unless ``texts``)."""
        ...

    def scan_ids(self) -> Iterator[str]:
        """Every stored chunk id."""
        ...

    def scan_sources(self, source_ids: Sequence[str], *, texts: bool) -> Iterator[StoredChunk]:
        """Every stored chunk of the documents ``source_ids``."""
        ...


__all__ = [
    "STATE_COMPLETE",
    "STATE_RUNNING",
    "STORE_FORMAT",
    "ChunkStore",
    "Metadata",
    "MetadataValue",
    "StoredChunk",
    "chunk_from_stored",
    "chunk_metadata",
    "document_from_metadata",
    "document_text",
    "evidence_from_stored",
]
