"""The Milvus store's whole-document BM25 rows, kept in step with its chunks.

Each document has one row (its title line and the text its chunks cover, in medgraph's terms),
rebuilt for the documents an ingest wrote, dropped when a prune or an emptied document leaves it
no chunk, and rebuilt after an interrupted ingest by the next one that completes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import LiteratureIndex
from medgraph.knowledge.lexical import tokenize
from medgraph.knowledge.milvus_store import MilvusStore
from medgraph.knowledge.store import document_text
from tests.knowledge.conftest import store_fields
from tests.knowledge.index_support import HashEmbedder, corpus_records, write_jsonl


def _rows(store: MilvusStore) -> dict[str, str]:
    client = store._connect()
    rows = client.query(
        store.documents_name, filter="", output_fields=["source_id", "lexical"], limit=16384
    )
    return {row["source_id"]: row["lexical"] for row in rows}


def _expected(store: MilvusStore, source_id: str) -> str:
    chunks = list(store.scan_sources([source_id], texts=True))
    return " ".join(tokenize(document_text(chunks)))


@pytest.mark.parametrize("where", ["milvus-lite", "milvus-server"])
def test_document_rows_follow_ingest_prune_and_an_interrupted_ingest(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    records = corpus_records(10)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    fields: dict[str, Any] = store_fields(request, where)
    settings = KnowledgeSettings(index_dir=tmp_path / "index", **fields)
    with LiteratureIndex(settings, embedder=HashEmbedder()) as index:
        index.ingest([corpus], progress=False)
        store = index._open_for_read()
        assert isinstance(store, MilvusStore)
        rows = _rows(store)
        assert set(rows) == {record["pmid"] for record in records}
        assert all(rows[pmid] == _expected(store, pmid) for pmid in rows)

        # a changed document gets a new row; documents pruned away lose theirs
        changed = dict(records[0], title="Aquagenic pruritus revisited")
        write_jsonl(corpus, [changed, *records[1:8]])
        index.ingest([corpus], prune=True, progress=False)
        rows = _rows(store)
        assert set(rows) == {record["pmid"] for record in records[:8]}
        assert "aquagen" in rows[records[0]["pmid"]].split()
        assert rows[records[0]["pmid"]] == _expected(store, records[0]["pmid"])

        # an ingest that died before finishing left rows unbuilt: the next ingest builds them
        store.set_state(documents_generation=0, ingest_state="running")
        store._connect().delete(store.documents_name, ids=[records[3]["pmid"]])
        index.ingest([corpus], progress=False)
        assert set(_rows(store)) == {record["pmid"] for record in records[:8]}
