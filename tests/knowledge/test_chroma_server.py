"""The index against a real Chroma server (``chroma run``), as several processes would share it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medgraph.errors import IndexUnavailableError
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import LiteratureIndex
from tests.knowledge.index_support import HashEmbedder, corpus_records, write_jsonl
from tests.support import chroma_server, free_port


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


def test_server_store_ingest_search_and_shared_readers(chroma_url: str, tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_records(8))
    more = write_jsonl(tmp_path / "more.jsonl", corpus_records(12)[8:])
    settings = KnowledgeSettings(index_dir=tmp_path / "worker-1", chroma_url=chroma_url)
    embedder = HashEmbedder()
    writer = LiteratureIndex(settings, embedder=embedder)
    report = writer.ingest([corpus], progress=False)
    assert report.documents_added == 8 and report.index_chunks == embedder.documents_embedded
    assert not (tmp_path / "worker-1" / "chroma").exists()  # vectors live on the server
    assert (tmp_path / "worker-1" / "bm25" / "current.json").exists()

    # Writers on a server take no exclusive lock: a second one may ingest while the first is open.
    second = LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "worker-2", chroma_url=chroma_url),
        embedder=HashEmbedder(),
    )
    assert second.ingest([more], progress=False).documents_added == 4
    # The first process sees the other's chunks in every mode; its stale BM25 is rebuilt.
    record = corpus_records(12)[10]
    pmid, query = record["pmid"], record["sections"][0]["text"][:100]
    for mode in ("dense", "lexical", "hybrid"):
        hits = writer.search(query, k=200, mode=mode, where={"source_ids": [pmid]})
        assert hits and {hit.source_id for hit in hits} == {pmid}, mode
    assert writer.stats().documents == 12
    assert writer.stats().chunks == second.stats().chunks
    reader = LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "reader", chroma_url=chroma_url),
        embedder=HashEmbedder(),
    )
    assert [h.chunk.chunk_id for h in reader.search("treatment", k=5, mode="lexical")] == [
        h.chunk.chunk_id for h in writer.search("treatment", k=5, mode="lexical")
    ]
    for index in (writer, second, reader):
        index.close()


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    index = LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "index", chroma_url=url), embedder=HashEmbedder()
    )
    with pytest.raises(IndexUnavailableError, match=r"cannot reach the Chroma server.*chroma run"):
        index.search("anything")
