"""The index against a real store server, as several processes share it: a Chroma server
(``chroma run``) and Milvus Lite's gRPC server (``milvus-lite server``, as a Milvus cluster is
reached)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from medgraph.errors import IndexUnavailableError
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import LiteratureIndex
from tests.knowledge.index_support import HashEmbedder, corpus_records, write_jsonl
from tests.support import REPO_ROOT, chroma_server, free_port


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


@pytest.fixture(params=["chroma", "milvus"])
def server(request: pytest.FixtureRequest) -> dict[str, str]:
    """KnowledgeSettings fields naming a store server."""
    if request.param == "chroma":
        return {"chroma_url": request.getfixturevalue("chroma_url")}
    uri = request.getfixturevalue("milvus_uri")
    return {"store": "milvus", "milvus_uri": uri, "collection": f"shared{uuid.uuid4().hex}"}


def test_server_store_ingest_search_and_shared_readers(
    server: dict[str, str], tmp_path: Path
) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_records(8))
    more = write_jsonl(tmp_path / "more.jsonl", corpus_records(12)[8:])
    settings = KnowledgeSettings(index_dir=tmp_path / "worker-1", **server)
    embedder = HashEmbedder()
    writer = LiteratureIndex(settings, embedder=embedder)
    report = writer.ingest([corpus], progress=False)
    assert report.documents_added == 8 and report.index_chunks == embedder.documents_embedded
    # vectors live on the server; BM25 files stay beside a Chroma client only
    assert not (tmp_path / "worker-1" / "chroma").exists()
    assert not (tmp_path / "worker-1" / "milvus.db").exists()
    bm25 = (tmp_path / "worker-1" / "bm25" / "current.json").exists()
    assert bm25 == ("chroma_url" in server)

    # Writers on a server take no exclusive lock: a second one may ingest while the first is open.
    second = LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "worker-2", **server),
        embedder=HashEmbedder(),
    )
    assert second.ingest([more], progress=False).documents_added == 4
    # The first process sees the other's chunks in every mode (on Chroma, its stale BM25 is
    # brought up to date).
    record = corpus_records(12)[10]
    pmid, query = record["pmid"], record["sections"][0]["text"][:100]
    for mode in ("dense", "lexical", "hybrid"):
        hits = writer.search(query, k=200, mode=mode, where={"source_ids": [pmid]})
        assert hits and {hit.source_id for hit in hits} == {pmid}, mode
    assert writer.stats().documents == 12
    assert writer.stats().chunks == second.stats().chunks
    reader = LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "reader", **server),
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


def test_unreachable_milvus_server_is_a_clear_error(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    settings = KnowledgeSettings(index_dir=tmp_path / "index", store="milvus", milvus_uri=uri)
    index = LiteratureIndex(settings, embedder=HashEmbedder())
    with pytest.raises(IndexUnavailableError, match=r"cannot reach the Milvus server.*milvus_uri"):
        index.search("anything")


def test_readers_search_while_another_process_ingests(
    server: dict[str, str], tmp_path: Path
) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_records(40))
    first = write_jsonl(tmp_path / "first.jsonl", corpus_records(4))
    reader = LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "reader", **server), embedder=HashEmbedder()
    )
    reader.ingest([first], progress=False)
    worker = [sys.executable, "-m", "tests.knowledge.index_support", str(tmp_path / "writer")]
    writer = subprocess.Popen(
        [*worker, str(corpus), "16", "0.05", "nohold", json.dumps(server)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    counts = []
    try:
        assert writer.stdout is not None
        for line in writer.stdout:
            if line.startswith("DONE"):
                break
            # between the writer's batches, every mode answers from what is stored so far
            for mode in ("dense", "lexical", "hybrid"):
                assert reader.search("patients treatment", k=3, mode=mode), mode
            counts.append(reader.stats().chunks)
        assert writer.wait(timeout=120) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
    assert len(counts) >= 3 and counts == sorted(counts) and counts[-1] > counts[0]
    done = LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "writer", **server), embedder=HashEmbedder()
    )
    assert reader.stats().chunks == done.stats().chunks
    assert reader.stats().documents == 40
    for index in (reader, done):
        index.close()
