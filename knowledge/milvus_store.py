"""The Milvus store of the literature index: one collection holding texts, metadata and vectors.

The same client code serves Milvus Lite (a local ``.db`` folder, opened in this process), Milvus
Lite's own gRPC server (``milvus-lite server``) and Milvus Standalone or Distributed, selected by
``knowledge.milvus_uri``. The lexical side is Milvus's BM25 function: each chunk's ``lexical``
field holds the terms of medgraph's own tokeniser (:func:`~medgraph.knowledge.lexical.tokenize`,
stopwords dropped, Snowball-stemmed) joined by spaces, so Milvus's standard analyzer reproduces
today's terms on every deployment; no BM25 files are kept beside it.

Scalar fields (``source_id``, ``origin``, ``year``, ``generation``, ``chunk_index``) serve filters
and bookkeeping; the rest of a chunk's flat metadata is one JSON field. The collection's state
record (embedding model, generation, ingest state) is a collection property.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from medgraph.errors import ConfigurationError, IndexUnavailableError, IngestError
from medgraph.knowledge.chunking import passage_text
from medgraph.knowledge.lexical import K1 as BM25_K1
from medgraph.knowledge.lexical import B as BM25_B
from medgraph.knowledge.lexical import tokenize
from medgraph.knowledge.search_filter import milvus_strings
from medgraph.knowledge.store import Metadata, MetadataValue, StoredChunk

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# Index types medgraph accepts for the dense field; Milvus Lite builds the first five, a server
# all of them (DISKANN needs a query node with a local disk).
DENSE_INDEX_TYPES = (
    "HNSW",
    "HNSW_SQ",
    "IVF_FLAT",
    "IVF_SQ8",
    "FLAT",
    "HNSW_PQ",
    "IVF_PQ",
    "IVF_RABITQ",
    "DISKANN",
    "AUTOINDEX",
)
_STATE_PROPERTY = "medgraph_state"
_SCALARS = ("source_id", "origin", "year", "generation", "index")
_TEXT_FIELDS = ["text", "source_id", "origin", "year", "generation", "chunk_index", "metadata"]
_META_FIELDS = ["source_id", "origin", "year", "generation", "chunk_index", "metadata"]
_MAX_VARCHAR = 65_535
# pymilvus pings every 10 s even on an idle channel; a gRPC server with default settings (Milvus
# Lite's) allows one ping per 5 minutes without data and answers more with GOAWAY "too many
# pings", after which the process's shared channel fails new clients. Ping less often than that.
_GRPC_OPTIONS = {"grpc.keepalive_time_ms": 330_000}
_COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")
_PAGE = 1000


class _SessionTimestampNotice(logging.Filter):
    """Drops pymilvus's warning that a server (Milvus Lite) gave a query iterator no session
    timestamp: the iterator falls back to the client's clock, which is all a scan needs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


_SESSION_NOTICE = _SessionTimestampNotice()

# Milvus Lite serves a .db folder from a server inside this process, shared by every client of
# that path; the last store to close it stops that server, which lets another process open it.
_LOCAL_OPEN: dict[str, int] = {}
_LOCAL_LOCK = threading.Lock()


def _local_opened(path: str) -> None:
    with _LOCAL_LOCK:
        _LOCAL_OPEN[path] = _LOCAL_OPEN.get(path, 0) + 1


def _local_closed(path: str) -> None:
    with _LOCAL_LOCK:
        left = _LOCAL_OPEN.get(path, 1) - 1
        if left > 0:
            _LOCAL_OPEN[path] = left
            return
        _LOCAL_OPEN.pop(path, None)
        from milvus_lite import server_manager_instance

        server_manager_instance.release_server(path)


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError:
        raise ConfigurationError(
            "knowledge.store=milvus needs the Milvus client: pip install 'medgraph[milvus]'"
        ) from None
    logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_SESSION_NOTICE)
    return pymilvus


def is_local_uri(uri: str) -> bool:
    """Whether a Milvus URI names a Milvus Lite folder (opened in-process), not a server."""
    return not uri.startswith(("http://", "https://", "tcp://", "unix:"))


def lexical_text(title: str | None, text: str) -> str:
    """The ``lexical`` field of a chunk: medgraph's BM25 terms of its title line and text."""
    return " ".join(tokenize(passage_text(title, text)))


class MilvusStore:
    """One Milvus collection, on Milvus Lite (``uri`` a ``.db`` path) or a Milvus server."""

    def __init__(
        self,
        *,
        uri: str,
        collection: str,
        token: str | None = None,
        index_type: str = "HNSW",
        index_params: Mapping[str, Any] | None = None,
    ) -> None:
        if index_type not in DENSE_INDEX_TYPES:
            raise ConfigurationError(
                f"knowledge.milvus_index_type {index_type!r} is not one of "
                f"{', '.join(DENSE_INDEX_TYPES)}"
            )
        if not _COLLECTION_NAME.match(collection):
            raise ConfigurationError(
                f"knowledge.collection {collection!r} is not a Milvus collection name: use "
                f"letters, digits and '_', starting with a letter or '_' (at most 200)"
            )
        self.uri = uri
        self.collection_name = collection
        self.token = token
        self.index_type = index_type
        self.index_params = dict(index_params or {})
        self._client: Any = None
        self._open = False
        self._metric = "COSINE"

    @property
    def local(self) -> bool:
        """True for a Milvus Lite ``.db`` folder opened in this process."""
        return is_local_uri(self.uri)

    @property
    def location(self) -> str:
        """Where the store lives, for messages."""
        return f"{self.uri} (Milvus collection {self.collection_name})"

    # -- connection ----------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        pymilvus = _pymilvus()
        if self.local:
            if not self.uri.endswith(".db"):
                raise ConfigurationError(
                    f"knowledge.milvus_uri {self.uri!r} is neither a Milvus Lite path ending in "
                    f"'.db' nor an http(s)://host:port server address"
                )
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        else:
            parsed = urlparse(self.uri)
            if parsed.scheme in ("http", "https") and not parsed.hostname:
                raise ConfigurationError(
                    f"knowledge.milvus_uri {self.uri!r} names no host; use e.g. "
                    f"http://localhost:19530"
                )
        try:
            self._client = pymilvus.MilvusClient(
                uri=self.uri, token=self.token or "", grpc_options=_GRPC_OPTIONS
            )
            if self.local:
                _local_opened(os.path.abspath(self.uri))
        except Exception as error:
            self._client = None
            if self.local:
                raise IndexUnavailableError(
                    f"cannot open the Milvus Lite store {self.uri} ({error}); another process "
                    f"may hold it: Milvus Lite opens a .db folder in one process only, so serve "
                    f"it with `milvus-lite server --data-dir {self.uri} --port 19530` and set "
                    f"knowledge.milvus_uri=http://127.0.0.1:19530 for several processes"
                ) from error
            raise IndexUnavailableError(
                f"cannot reach the Milvus server at {self.uri}: {error}; start it (Milvus "
                f"Standalone, or `milvus-lite server --data-dir DIR`) or check "
                f"knowledge.milvus_uri and knowledge.milvus_token"
            ) from error
        return self._client

    def collection_exists(self) -> bool:
        """Whether the collection exists (never creates anything)."""
        if self._open:
            return True
        if self.local and not Path(self.uri).exists():
            return False
        client = self._connect()
        if not client.has_collection(self.collection_name):
            return False
        self._load()
        return True

    def _load(self) -> None:
        # Milvus searches only loaded collections; loading a loaded one returns at once.
        self._connect().load_collection(self.collection_name)
        self._metric = str(self.state().get("metric", "cosine")).upper()
        self._open = True

    def create(self, metadata: Metadata) -> None:
        """Open the collection, creating it (schema, BM25 function, indexes) when missing.

        ``metadata`` is the state record of a new collection and must hold ``dimension``; its
        ``metric`` (``cosine``, the default, or ``ip``) is the dense index's similarity.
        """
        if self._open:
            return
        client = self._connect()
        if not client.has_collection(self.collection_name):
            pymilvus = _pymilvus()
            dimension = int(metadata["dimension"])
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            data_type = pymilvus.DataType
            schema.add_field("id", data_type.VARCHAR, is_primary=True, max_length=128)
            schema.add_field("text", data_type.VARCHAR, max_length=_MAX_VARCHAR)
            schema.add_field(
                "lexical",
                data_type.VARCHAR,
                max_length=_MAX_VARCHAR,
                enable_analyzer=True,
                analyzer_params={"tokenizer": "standard", "filter": ["lowercase"]},
            )
            schema.add_field("sparse", data_type.SPARSE_FLOAT_VECTOR)
            schema.add_field("vector", data_type.FLOAT_VECTOR, dim=dimension)
            schema.add_field("source_id", data_type.VARCHAR, max_length=1024)
            schema.add_field("origin", data_type.VARCHAR, max_length=256)
            schema.add_field("year", data_type.INT64, nullable=True)
            schema.add_field("generation", data_type.INT64)
            schema.add_field("chunk_index", data_type.INT64)
            schema.add_field("metadata", data_type.JSON)
            schema.add_function(
                pymilvus.Function(
                    name="bm25",
                    function_type=pymilvus.FunctionType.BM25,
                    input_field_names=["lexical"],
                    output_field_names=["sparse"],
                )
            )
            indexes = client.prepare_index_params()
            indexes.add_index(
                "vector",
                index_type=self.index_type,
                metric_type=str(metadata.get("metric", "cosine")).upper(),
                params=_wire_params(self.index_params or _default_index_params(self.index_type)),
            )
            # medgraph's BM25 parameters, so both stores score terms alike
            indexes.add_index(
                "sparse",
                index_type="SPARSE_INVERTED_INDEX",
                metric_type="BM25",
                params=_wire_params({"bm25_k1": BM25_K1, "bm25_b": BM25_B}),
            )
            state = {**metadata, "store_id": uuid.uuid4().hex}
            client.create_collection(
                self.collection_name,
                schema=schema,
                index_params=indexes,
                properties={_STATE_PROPERTY: json.dumps(state)},
            )
        self._load()

    def close(self) -> None:
        """Close the client; the last one of a Milvus Lite folder stops its in-process server."""
        if self._client is not None:
            with contextlib.suppress(Exception):  # a client already gone has nothing to close
                self._client.close()
            if self.local:
                _local_closed(os.path.abspath(self.uri))
        self._client = None
        self._open = False

    # -- collection state ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The collection's state record as Milvus holds it now."""
        described = self._connect().describe_collection(self.collection_name)
        raw = (described.get("properties") or {}).get(_STATE_PROPERTY)
        return dict(json.loads(raw)) if raw else {}

    def set_state(self, **updates: MetadataValue) -> dict[str, Any]:
        """Merge ``updates`` into the state record."""
        merged = self.state()
        merged.update(updates)
        self._connect().alter_collection_properties(
            self.collection_name, properties={_STATE_PROPERTY: json.dumps(merged)}
        )
        return merged

    @property
    def collection_id(self) -> str:
        """A random id given to the collection when it was created."""
        return str(self.state().get("store_id", ""))

    def flush(self) -> None:
        """Seal what was written into segments (searches over sealed segments are fast)."""
        self._connect().flush(self.collection_name)

    # -- chunks --------------------------------------------------------------------------------

    def count(self) -> int:
        """Chunks in the collection."""
        return self.count_where("")

    def count_where(self, expr: str) -> int:
        """Chunks matching a Milvus boolean expression ("" for all)."""
        rows = self._connect().query(self.collection_name, filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def add(
        self,
        ids: Sequence[str],
        embeddings: npt.NDArray[np.float32],
        texts: Sequence[str],
        metadatas: Sequence[Metadata],
    ) -> None:
        """Upsert chunks: a chunk id stored already is replaced, never duplicated (Milvus does
        not check primary keys on insert)."""
        if not ids:
            return
        rows = [
            _row(chunk_id, text, metadata, vector.tolist())
            for chunk_id, text, metadata, vector in zip(
                ids, texts, metadatas, embeddings, strict=True
            )
        ]
        self._connect().upsert(self.collection_name, rows)

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[Metadata]) -> None:
        """Replace the metadata of stored chunks (their rows are read and written back whole)."""
        client = self._connect()
        for start in range(0, len(ids), _PAGE):
            batch = list(ids[start : start + _PAGE])
            wanted = dict(zip(batch, metadatas[start : start + _PAGE], strict=True))
            rows = client.get(self.collection_name, ids=batch, output_fields=["text", "vector"])
            client.upsert(
                self.collection_name,
                [
                    _row(row["id"], row["text"], wanted[row["id"]], list(row["vector"]))
                    for row in rows
                ],
            )

    def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id."""
        client = self._connect()
        for start in range(0, len(ids), _PAGE):
            client.delete(self.collection_name, ids=list(ids[start : start + _PAGE]))

    def get(self, ids: Sequence[str]) -> dict[str, StoredChunk]:
        """Stored chunks by id (missing ids are absent from the result)."""
        client = self._connect()
        found: dict[str, StoredChunk] = {}
        for start in range(0, len(ids), _PAGE):
            rows = client.get(
                self.collection_name,
                ids=list(ids[start : start + _PAGE]),
                output_fields=_TEXT_FIELDS,
            )
            found.update((row["id"], _stored(row)) for row in rows)
        return found

    def _iterate(self, expr: str, fields: list[str], page_size: int) -> Iterator[dict[str, Any]]:
        iterator = self._connect().query_iterator(
            self.collection_name, batch_size=page_size, filter=expr, output_fields=fields
        )
        try:
            while True:
                page = iterator.next()
                if not page:
                    return
                yield from page
        finally:
            iterator.close()

    def scan(self, *, texts: bool, page_size: int = 5000) -> Iterator[StoredChunk]:
        """Every stored chunk, page by page (texts empty unless ``texts``)."""
        return self.scan_where("", texts=texts, page_size=page_size)

    def scan_where(self, expr: str, *, texts: bool, page_size: int = 5000) -> Iterator[StoredChunk]:
        """Every stored chunk matching a Milvus boolean expression, page by page."""
        fields = _TEXT_FIELDS if texts else _META_FIELDS
        for row in self._iterate(expr, fields, page_size):
            yield _stored(row)

    def scan_ids(self, page_size: int = 16384) -> Iterator[str]:
        """Every stored chunk id."""
        for row in self._iterate("", ["id"], page_size):
            yield str(row["id"])

    def scan_sources(
        self, source_ids: Sequence[str], *, texts: bool, page_size: int = 500
    ) -> Iterator[StoredChunk]:
        """Every stored chunk of the documents ``source_ids`` (asked ``page_size`` at a time)."""
        unique = sorted(set(source_ids))
        for start in range(0, len(unique), page_size):
            names = milvus_strings(unique[start : start + page_size])
            yield from self.scan_where(f"source_id in {names}", texts=texts)

    # -- search --------------------------------------------------------------------------------

    def search_dense(
        self, vector: npt.NDArray[np.float32], limit: int, expr: str
    ) -> list[tuple[str, str, float]]:
        """The ``limit`` nearest chunks to ``vector``: (chunk id, source id, similarity), cosine
        or the inner product as the collection's metric says."""
        return self._search([vector.tolist()], "vector", self._metric, limit, expr)

    def search_lexical(
        self, terms: Sequence[str], limit: int, expr: str
    ) -> list[tuple[str, str, float]]:
        """The ``limit`` best BM25 chunks for ``terms``: (chunk id, source id, BM25 score)."""
        if not terms:
            return []
        return [
            # BM25 scores are never negative; Milvus Lite reports them negated as distances
            (chunk_id, source, abs(score))
            for chunk_id, source, score in self._search(
                [" ".join(terms)], "sparse", "BM25", limit, expr
            )
        ]

    def _search(
        self, data: list[Any], field: str, metric: str, limit: int, expr: str
    ) -> list[tuple[str, str, float]]:
        if limit < 1:
            return []
        params: dict[str, Any] = {"metric_type": metric}
        if field == "vector":
            params["params"] = _search_params(self.index_type, limit)
        hits = self._connect().search(
            self.collection_name,
            data=data,
            anns_field=field,
            limit=limit,
            filter=expr,
            output_fields=["source_id"],
            search_params=params,
        )
        return [
            (str(hit["id"]), str(hit["entity"]["source_id"]), float(hit["distance"]))
            for hit in hits[0]
        ]

    def search_hybrid(
        self,
        vector: npt.NDArray[np.float32],
        terms: Sequence[str],
        limit: int,
        expr: str,
        *,
        ranker: str,
        rrf_k: int,
        dense_weight: float,
    ) -> list[tuple[str, str, float]]:
        """Milvus's own hybrid search, dense and BM25 requests merged by its ``rrf`` or
        ``weighted`` ranker: (chunk id, source id, fused score)."""
        pymilvus = _pymilvus()
        requests = [
            pymilvus.AnnSearchRequest(
                [vector.tolist()],
                "vector",
                {"metric_type": self._metric, "params": _search_params(self.index_type, limit)},
                limit,
                expr=expr or None,
            )
        ]
        if terms:
            requests.append(
                pymilvus.AnnSearchRequest(
                    [" ".join(terms)], "sparse", {"metric_type": "BM25"}, limit, expr=expr or None
                )
            )
        merge = (
            pymilvus.RRFRanker(rrf_k)
            if ranker == "rrf"
            else pymilvus.WeightedRanker(dense_weight, 1.0 - dense_weight)
        )
        if len(requests) == 1:
            merge = pymilvus.RRFRanker(rrf_k) if ranker == "rrf" else pymilvus.WeightedRanker(1.0)
        hits = self._connect().hybrid_search(
            self.collection_name, requests, merge, limit=limit, output_fields=["source_id"]
        )
        return [
            (str(hit["id"]), str(hit["entity"]["source_id"]), float(hit["distance"]))
            for hit in hits[0]
        ]


def _wire_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Index build parameters as one JSON ``params`` entry: Milvus servers read that form and
    the flattened one pymilvus sends, Milvus Lite only that one (it drops flattened keys)."""
    return {"params": json.dumps(dict(params))} if params else {}


def _default_index_params(index_type: str) -> dict[str, Any]:
    if index_type in ("HNSW", "HNSW_SQ", "HNSW_PQ"):
        return {"M": 16, "efConstruction": 200}
    if index_type.startswith("IVF"):
        return {"nlist": 1024}
    return {}


def _search_params(index_type: str, limit: int) -> dict[str, Any]:
    if index_type.startswith("HNSW"):
        return {"ef": max(limit, 128)}
    if index_type.startswith("IVF"):
        return {"nprobe": 32}
    if index_type == "DISKANN":
        return {"search_list": max(limit, 100)}
    return {}


def _row(chunk_id: str, text: str, metadata: Metadata, vector: list[float]) -> dict[str, Any]:
    if len(text.encode()) > _MAX_VARCHAR:
        raise IngestError(
            f"chunk {chunk_id} of document {metadata.get('source_id')} holds "
            f"{len(text.encode())} bytes of text, over Milvus's {_MAX_VARCHAR} per field; give "
            f"the record a shorter text or split it into passages"
        )
    title = metadata.get("title")
    year = metadata.get("year")
    return {
        "id": chunk_id,
        "text": text,
        "lexical": _clipped(lexical_text(title if isinstance(title, str) else None, text)),
        "vector": vector,
        "source_id": str(metadata["source_id"]),
        "origin": str(metadata.get("origin") or ""),
        "year": None if year is None else int(year),
        "generation": int(metadata.get("generation", 0)),
        "chunk_index": int(metadata.get("index", 0)),
        "metadata": {key: value for key, value in metadata.items() if key not in _SCALARS},
    }


def _clipped(text: str) -> str:
    """``text`` cut to Milvus's VARCHAR limit in bytes (at a character boundary)."""
    encoded = text.encode()
    if len(encoded) <= _MAX_VARCHAR:
        return text
    return encoded[:_MAX_VARCHAR].decode(errors="ignore")


def _stored(row: Mapping[str, Any]) -> StoredChunk:
    metadata: dict[str, Any] = dict(row.get("metadata") or {})
    metadata["source_id"] = row["source_id"]
    metadata["index"] = int(row.get("chunk_index", 0))
    metadata["generation"] = int(row.get("generation", 0))
    if row.get("origin"):
        metadata["origin"] = row["origin"]
    if row.get("year") is not None:
        metadata["year"] = int(row["year"])
    return StoredChunk(str(row["id"]), str(row.get("text") or ""), metadata)


__all__ = ["DENSE_INDEX_TYPES", "MilvusStore", "is_local_uri", "lexical_text"]
