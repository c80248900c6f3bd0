"""The Chroma store of the literature index: one collection, embedded or on a Chroma server.

Every chunk is stored with its text and a flat metadata record (see
:func:`~medgraph.knowledge.store.chunk_metadata`). The collection's own metadata records the
embedding model that made the vectors and the index's generation counter, which tells readers
whether the BM25 files beside it are current.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from medgraph.errors import ConfigurationError, IndexUnavailableError
from medgraph.knowledge.store import Metadata, MetadataValue, StoredChunk

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")
_PAGE = 1000


def _check_collection_name(name: str) -> None:
    if not _COLLECTION_NAME.match(name):
        raise ConfigurationError(
            f"collection name {name!r} is not valid for Chroma: use 3-512 characters from "
            f"letters, digits, '.', '_' and '-', starting and ending with a letter or digit"
        )


def _chroma_settings() -> Any:
    import chromadb

    return chromadb.Settings(anonymized_telemetry=False, allow_reset=False)


class ChromaStore:
    """One Chroma collection, through an embedded ``PersistentClient`` or an ``HttpClient``."""

    def __init__(self, *, collection: str, path: Path | None = None, url: str | None = None):
        if (path is None) == (url is None):
            raise ValueError("give exactly one of path (embedded store) or url (Chroma server)")
        _check_collection_name(collection)
        self.collection_name = collection
        self.path = path
        self.url = url
        self._client: Any = None
        self._collection: Any = None

    @property
    def location(self) -> str:
        """Where the store lives, for messages."""
        return self.url if self.url is not None else str(self.path)

    # -- connection ----------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        import chromadb

        if self.url is not None:
            parsed = urlparse(self.url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ConfigurationError(
                    f"chroma_url {self.url!r} is not an http(s) URL; use e.g. http://localhost:8000"
                )
            ssl = parsed.scheme == "https"
            port = parsed.port or (443 if ssl else 8000)
            try:
                self._client = chromadb.HttpClient(
                    host=parsed.hostname, port=port, ssl=ssl, settings=_chroma_settings()
                )
                self._client.heartbeat()
            except Exception as error:
                self._client = None
                raise IndexUnavailableError(
                    f"cannot reach the Chroma server at {self.url}: {error}; start it with "
                    f"`chroma run --path DIR --port {port}` or unset knowledge.chroma_url to use "
                    f"the embedded store"
                ) from error
        else:
            assert self.path is not None
            try:
                self._client = chromadb.PersistentClient(
                    path=str(self.path), settings=_chroma_settings()
                )
            except Exception as error:
                raise IndexUnavailableError(
                    f"cannot open the Chroma store in {self.path}: {error}"
                ) from error
        return self._client

    def collection_exists(self) -> bool:
        """Whether the collection exists (never creates anything)."""
        if self._collection is not None:
            return True
        if self.path is not None and not (self.path / "chroma.sqlite3").exists():
            return False
        client = self._connect()
        try:
            self._collection = client.get_collection(self.collection_name, embedding_function=None)
        except Exception:
            return False
        return True

    def create(self, metadata: Metadata) -> None:
        """Open the collection, creating it with ``metadata`` when missing (in the space its
        ``metric`` names: ``cosine``, the default, or ``ip``)."""
        if self._collection is not None:
            return
        client = self._connect()
        self._collection = client.get_or_create_collection(
            self.collection_name,
            embedding_function=None,
            configuration={"hnsw": {"space": str(metadata.get("metric", "cosine"))}},
            metadata=dict(metadata),
        )

    @property
    def collection(self) -> Any:
        """The open Chroma collection (call :meth:`create` or :meth:`collection_exists` first)."""
        if self._collection is None:
            raise IndexUnavailableError(
                f"collection {self.collection_name!r} is not open in {self.location}"
            )
        return self._collection

    def close(self) -> None:
        """Forget the client and collection (Chroma keeps no per-client resources to free)."""
        self._collection = None
        self._client = None

    # -- collection metadata -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The collection's metadata as Chroma currently holds it."""
        client = self._connect()
        collection = client.get_collection(self.collection_name, embedding_function=None)
        self._collection = collection
        return dict(collection.metadata or {})

    def set_state(self, **updates: MetadataValue) -> dict[str, Any]:
        """Merge ``updates`` into the collection's metadata (Chroma replaces it whole)."""
        merged = self.state()
        merged.update(updates)
        self.collection.modify(metadata=merged)
        return merged

    # -- chunks --------------------------------------------------------------------------------

    def count(self) -> int:
        """Chunks in the collection."""
        return int(self.collection.count())

    def add(
        self,
        ids: Sequence[str],
        embeddings: npt.NDArray[np.float32],
        texts: Sequence[str],
        metadatas: Sequence[Metadata],
    ) -> None:
        """Insert chunks (ids already present are left as they are)."""
        if ids:
            self.collection.add(
                ids=list(ids),
                embeddings=embeddings,
                documents=list(texts),
                metadatas=[dict(m) for m in metadatas],
            )

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[Metadata]) -> None:
        """Replace the metadata of existing chunks, keeping their vectors."""
        for start in range(0, len(ids), _PAGE):
            self.collection.update(
                ids=list(ids[start : start + _PAGE]),
                metadatas=[dict(m) for m in metadatas[start : start + _PAGE]],
            )

    def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id."""
        for start in range(0, len(ids), _PAGE):
            self.collection.delete(ids=list(ids[start : start + _PAGE]))

    def get(self, ids: Sequence[str]) -> dict[str, StoredChunk]:
        """Stored chunks by id (missing ids are absent from the result)."""
        found: dict[str, StoredChunk] = {}
        for start in range(0, len(ids), _PAGE):
            batch = self.collection.get(
                ids=list(ids[start : start + _PAGE]), include=["documents", "metadatas"]
            )
            found.update(self._records(batch))
        return found

    @property
    def collection_id(self) -> str:
        """Chroma's id of the collection (a re-created collection gets a new one)."""
        return str(self.collection.id)

    def scan_ids(self, page_size: int = 20000) -> Iterator[str]:
        """Every stored chunk id, page by page (no texts, no metadata)."""
        offset = 0
        while True:
            batch = self.collection.get(include=[], limit=page_size, offset=offset)
            yield from batch["ids"]
            if len(batch["ids"]) < page_size:
                return
            offset += page_size

    def scan_where(
        self, where: Mapping[str, Any], *, texts: bool, page_size: int = 5000
    ) -> Iterator[StoredChunk]:
        """Every stored chunk matching a Chroma ``where`` clause, page by page."""
        include = ["metadatas", "documents"] if texts else ["metadatas"]
        offset = 0
        while True:
            batch = self.collection.get(
                where=dict(where), include=include, limit=page_size, offset=offset
            )
            yield from self._records(batch).values()
            if len(batch["ids"]) < page_size:
                return
            offset += page_size

    def scan_sources(
        self, source_ids: Sequence[str], *, texts: bool, page_size: int = 500
    ) -> Iterator[StoredChunk]:
        """Every stored chunk of the documents ``source_ids`` (asked ``page_size`` at a time)."""
        unique = sorted(set(source_ids))
        for start in range(0, len(unique), page_size):
            where = {"source_id": {"$in": unique[start : start + page_size]}}
            yield from self.scan_where(where, texts=texts)

    def scan(self, *, texts: bool, page_size: int = 5000) -> Iterator[StoredChunk]:
        """Every stored chunk, page by page (texts omitted unless ``texts``)."""
        include = ["metadatas", "documents"] if texts else ["metadatas"]
        offset = 0
        while True:
            batch = self.collection.get(include=include, limit=page_size, offset=offset)
            records = self._records(batch)
            yield from records.values()
            if len(batch["ids"]) < page_size:
                return
            offset += page_size

    def query(
        self, vector: npt.NDArray[np.float32], n_results: int, where: Mapping[str, Any] | None
    ) -> list[tuple[StoredChunk, float]]:
        """The ``n_results`` nearest chunks to ``vector`` as (chunk, similarity): cosine, or the
        inner product in an ``ip`` collection (Chroma's distance is one minus either)."""
        if n_results < 1:
            return []
        result = self._nearest(vector, n_results, where, ["documents", "metadatas", "distances"])
        ids = result["ids"][0]
        documents = (result.get("documents") or [[]])[0] or [""] * len(ids)
        metadatas = (result.get("metadatas") or [[]])[0] or [{}] * len(ids)
        distances = (result.get("distances") or [[]])[0] or [1.0] * len(ids)
        return [
            (StoredChunk(chunk_id, text or "", metadata or {}), 1.0 - float(distance))
            for chunk_id, text, metadata, distance in zip(
                ids, documents, metadatas, distances, strict=True
            )
        ]

    def _nearest(
        self,
        vector: npt.NDArray[np.float32],
        n_results: int,
        where: Mapping[str, Any] | None,
        include: list[str],
    ) -> Any:
        return self.collection.query(
            query_embeddings=vector.reshape(1, -1),
            n_results=n_results,
            where=dict(where) if where else None,
            include=include,  # type: ignore[arg-type]
        )

    def query_ids(
        self, vector: npt.NDArray[np.float32], n_results: int, where: Mapping[str, Any] | None
    ) -> list[tuple[str, float]]:
        """:meth:`query` without texts and metadata: (chunk id, similarity) pairs.

        Chroma reads metadata key by key, so leaving it out makes a 40-deep query about 3x
        cheaper; the caller fetches records for the few chunks it returns.
        """
        if n_results < 1:
            return []
        result = self._nearest(vector, n_results, where, ["distances"])
        ids = result["ids"][0]
        distances = (result.get("distances") or [[]])[0] or [1.0] * len(ids)
        return [
            (chunk_id, 1.0 - float(distance))
            for chunk_id, distance in zip(ids, distances, strict=True)
        ]

    @staticmethod
    def _records(batch: Mapping[str, Any]) -> dict[str, StoredChunk]:
        ids = batch["ids"]
        documents = batch.get("documents") or [""] * len(ids)
        metadatas = batch.get("metadatas") or [{}] * len(ids)
        return {
            chunk_id: StoredChunk(chunk_id, text or "", metadata or {})
            for chunk_id, text, metadata in zip(ids, documents, metadatas, strict=True)
        }
