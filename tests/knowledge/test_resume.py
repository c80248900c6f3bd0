"""An ingest killed with SIGKILL after its first batch is finished by running it again.

A subprocess ingests 120 real abstracts in batches of 16 (hashing embedder; real Chroma and BM25,
Milvus Lite in the process, or Milvus Lite's server); the test kills it as soon as it starts
embedding its second batch, so the first batch is stored and the second may be half-written.
Re-running the same ingest must leave exactly the chunks a clean ingest stores, each once (on
Chroma with BM25 describing the same chunks).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from medgraph.knowledge.chroma_search import ChromaSearch
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import LiteratureIndex
from medgraph.knowledge.lexical import LexicalIndex
from tests.knowledge.index_support import HashEmbedder, corpus_records, write_jsonl
from tests.support import REPO_ROOT

BATCH = 16


def _stored_ids(index: LiteratureIndex) -> list[str]:
    return [record.chunk_id for record in index._open_for_read().scan(texts=False)]


def _wait_until_settled(settings: KnowledgeSettings) -> None:
    """A server may still be storing a batch the killed client sent just before it died: wait
    (at most 30 s) until the stored chunk count holds for a second."""
    with LiteratureIndex(settings, embedder=HashEmbedder()) as index:
        store = index._open_for_read()
        deadline = time.monotonic() + 30
        last = store.count()
        while time.monotonic() < deadline:
            time.sleep(1)
            now = store.count()
            if now == last:
                return
            last = now
    raise AssertionError("the server kept storing chunks for 30 s after the client died")


def test_rerun_after_sigkill_completes_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_settings: dict[str, Any]
) -> None:
    chroma = not store_settings
    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_records(120))
    killed_dir = tmp_path / "killed"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.knowledge.index_support",
            str(killed_dir),
            str(corpus),
            str(BATCH),
            "0.02",
            "nohold",
            json.dumps(store_settings),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert worker.stdout is not None
        for line in worker.stdout:
            if line.startswith("EMBED 2 "):  # batch 1 is committed; batch 2 is being embedded
                os.kill(worker.pid, signal.SIGKILL)
                break
            assert not line.startswith("DONE"), "the ingest finished before it could be killed"
        assert worker.wait(timeout=60) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()

    settings = KnowledgeSettings(index_dir=killed_dir, batch_size=BATCH, **store_settings)
    if "milvus_uri" in store_settings:
        _wait_until_settled(settings)
    # The interrupted index is readable: its BM25 is rebuilt (once) from what Chroma holds.
    builds: list[int] = []
    build = ChromaSearch._build_lexical

    def counting_build(store: Any, generation: int, store_id: str | None = None) -> LexicalIndex:
        builds.append(generation)
        return build(store, generation, store_id)

    monkeypatch.setattr(ChromaSearch, "_build_lexical", staticmethod(counting_build))
    with LiteratureIndex(settings, embedder=HashEmbedder()) as interrupted:
        partial = _stored_ids(interrupted)
        assert BATCH <= len(partial) < 200
        assert interrupted.stats().chunks == len(partial)
        assert interrupted.search("patients", k=3, mode="lexical")
        assert interrupted.search("treatment", k=3, mode="hybrid")
        if chroma:
            lexical = interrupted._searcher._lexical
            assert lexical is not None and sorted(lexical.ids) == sorted(partial)
    assert len(builds) == (1 if chroma else 0)
    monkeypatch.undo()

    embedder = HashEmbedder()
    with LiteratureIndex(settings, embedder=embedder) as resumed:
        report = resumed.ingest([corpus], progress=False)
        resumed_ids = _stored_ids(resumed)
        assert report.chunks_unchanged == len(partial)
        assert embedder.documents_embedded == report.chunks_added

    clean_store = dict(store_settings)
    if "collection" in clean_store:
        clean_store["collection"] += "clean"
    clean_settings = KnowledgeSettings(
        index_dir=tmp_path / "clean", batch_size=BATCH, **clean_store
    )
    with LiteratureIndex(clean_settings, embedder=HashEmbedder()) as clean:
        clean_report = clean.ingest([corpus], progress=False)
        clean_ids = _stored_ids(clean)

    assert len(resumed_ids) == len(set(resumed_ids)) == clean_report.chunks_added
    assert sorted(resumed_ids) == sorted(clean_ids)
    assert report.chunks_added + report.chunks_unchanged == clean_report.chunks_added
    assert report.index_documents == clean_report.index_documents == 120
    if chroma:
        lexical = LexicalIndex.load(killed_dir / "bm25")
        assert lexical is not None and sorted(lexical.ids) == sorted(resumed_ids)
    # the rerun left a complete index: a third run has nothing to do
    with LiteratureIndex(settings, embedder=HashEmbedder()) as again:
        third = again.ingest([corpus], progress=False)
    assert third.chunks_added == third.chunks_removed == 0
