"""The BM25 side of ingest grows by segments: no rebuild on ingest, on resume or on pickup.

Every test compares the incrementally kept BM25 index with one rebuilt from what the store holds,
chunk ids and scores, after adds, replacements (changed documents), a prune and an emptied
document; and checks that no full rebuild (``_build_lexical``) ran where none was needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medgraph.knowledge.chroma_search import ChromaSearch, _document_entry
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import LiteratureIndex
from medgraph.knowledge.lexical import LexicalIndex
from tests.knowledge.index_support import HashEmbedder, corpus_records, write_jsonl
from tests.support import chroma_server

RECORDS = corpus_records(30)
QUERIES = ["patients treatment outcome", "children risk", "surgery complications mortality"]


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Generations of every full BM25 rebuild from the store."""
    calls: list[int] = []
    build = ChromaSearch._build_lexical

    def counting(store: Any, generation: int, store_id: str | None = None) -> LexicalIndex:
        calls.append(generation)
        return build(store, generation, store_id)

    monkeypatch.setattr(ChromaSearch, "_build_lexical", staticmethod(counting))
    return calls


def _assert_matches_store(index: LiteratureIndex) -> None:
    store = index._open_for_read()
    lexical = index._open_searcher().lexical_index()
    rebuilt = _full_build(store)
    assert sorted(lexical.ids) == sorted(record.chunk_id for record in store.scan(texts=False))
    assert lexical.documents is not None and rebuilt.documents is not None
    assert sorted(lexical.documents.ids) == sorted(rebuilt.documents.ids)
    for query in QUERIES:
        for level, reference in ((lexical, rebuilt), (lexical.documents, rebuilt.documents)):
            got, want = level.search(query, 30), reference.search(query, 30)
            assert [c for c, _ in got] == [c for c, _ in want], query
            assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9)


def _full_build(store: Any) -> LexicalIndex:
    records = list(store.scan(texts=True))
    by_source: dict[str, list[Any]] = {}
    for record in records:
        by_source.setdefault(record.source_id, []).append(record)
    return LexicalIndex.build(
        [r.chunk_id for r in records],
        [r.text for r in records],
        [r.source_id for r in records],
        [r.metadata.get("year") for r in records],
        generation=0,
        documents={source: _document_entry(chunks) for source, chunks in by_source.items()},
    )


def test_ingests_add_segments_and_honour_replacements_prune_and_emptied_documents(
    tmp_path: Path, builds: list[int]
) -> None:
    settings = KnowledgeSettings(index_dir=tmp_path / "index")
    first = write_jsonl(tmp_path / "a.jsonl", RECORDS[:20])
    with LiteratureIndex(settings, embedder=HashEmbedder()) as index:
        index.ingest([first], progress=False)
        assert builds == [1]  # the first ingest of an empty index builds once
        index.ingest([write_jsonl(tmp_path / "b.jsonl", RECORDS[20:])], progress=False)
        changed = [dict(RECORDS[3], sections=[{"label": "X", "text": "Entirely new findings."}])]
        changed.append(dict(RECORDS[4], sections=[{"label": "X", "text": ""}]))  # emptied
        index.ingest([write_jsonl(tmp_path / "c.jsonl", changed)], progress=False)
        _assert_matches_store(index)
        assert index._searcher._lexical is not None and index._searcher._lexical.segment_count > 1
        # prune: only the first file's documents stay
        report = index.ingest([first], prune=True, progress=False)
        assert report.documents_removed == 10
        _assert_matches_store(index)
    assert builds == [1]
    # a new process loads the saved segments: nothing rebuilt
    with LiteratureIndex(settings, embedder=HashEmbedder()) as reader:
        _assert_matches_store(reader)
    assert builds == [1]


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_server(tmp_path_factory.mktemp("chroma-incremental")) as url:
        yield url


def test_workers_sharing_a_server_pick_up_new_segments(
    chroma_url: str, tmp_path: Path, builds: list[int]
) -> None:
    def worker(name: str) -> LiteratureIndex:
        settings = KnowledgeSettings(
            index_dir=tmp_path / name, chroma_url=chroma_url, collection="incremental"
        )
        return LiteratureIndex(settings, embedder=HashEmbedder())

    writer, server_worker = worker("writer"), worker("serve-1")
    writer.ingest([write_jsonl(tmp_path / "a.jsonl", RECORDS[:20])], progress=False)
    _assert_matches_store(server_worker)  # a worker with no BM25 files builds once
    assert len(builds) == 2
    serving = server_worker._searcher._lexical
    assert serving is not None

    writer.ingest([write_jsonl(tmp_path / "b.jsonl", RECORDS[20:])], progress=False)
    changed = [dict(RECORDS[5], sections=[{"label": "X", "text": "Revised abstract text."}])]
    writer.ingest([write_jsonl(tmp_path / "c.jsonl", changed)], progress=False)
    _assert_matches_store(server_worker)
    assert len(builds) == 2  # picked up as a segment, not rebuilt
    picked = server_worker._searcher._lexical
    assert picked is not None and picked.segment_count == serving.segment_count + 1
    # the worker saved the segment: its next process starts from it
    assert LexicalIndex.saved_generation(tmp_path / "serve-1" / "bm25") == picked.generation
    for index in (writer, server_worker):
        index.close()


def test_bm25_files_of_another_tokeniser_are_rebuilt_once_and_saved(
    tmp_path: Path, builds: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = KnowledgeSettings(index_dir=tmp_path / "index")
    with LiteratureIndex(settings, embedder=HashEmbedder()) as index:
        index.ingest([write_jsonl(tmp_path / "a.jsonl", RECORDS[:10])], progress=False)
    assert builds == [1]
    # a new release tokenises differently: the saved files no longer load
    monkeypatch.setattr("medgraph.knowledge.lexical.tokenizer_fingerprint", lambda: "next")
    assert LexicalIndex.load(tmp_path / "index" / "bm25") is None
    with LiteratureIndex(settings, embedder=HashEmbedder()) as reader:
        reader.search("patients treatment outcome", k=3, mode="lexical")
    assert builds == [1, 1]  # rebuilt from the store ...
    saved = LexicalIndex.load(tmp_path / "index" / "bm25")
    assert saved is not None and saved.tokenizer == "next"  # ... and saved
    for _ in range(2):  # later starts load it: no rebuild until the next ingest
        with LiteratureIndex(settings, embedder=HashEmbedder()) as reader:
            _assert_matches_store(reader)
    assert builds == [1, 1]


def test_a_document_row_holds_the_title_and_each_chunked_word_once(tmp_path: Path) -> None:
    from medgraph.knowledge.chunking import passage_text
    from medgraph.knowledge.lexical import tokenize
    from medgraph.knowledge.readers import read_paths

    corpus = write_jsonl(tmp_path / "a.jsonl", RECORDS[:10])
    documents = read_paths([corpus]).documents
    with LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "index"), embedder=HashEmbedder()
    ) as index:
        index.ingest([corpus], progress=False)
        store = index._open_for_read()
        for document in documents:
            chunks = list(store.scan_sources([document.source_id], texts=True))
            assert len(chunks) > 1  # 40-token chunks that overlap by a sentence
            text, year = _document_entry(chunks)
            # the characters some chunk covers, each once (section labels are in no chunk)
            covered = sorted(
                {i for c in chunks for i in range(c.metadata["start"], c.metadata["end"])}
            )
            words = "".join(
                document.text[i] if i - 1 in covered or n == 0 else " " + document.text[i]
                for n, i in enumerate(covered)
            )
            assert tokenize(text) == tokenize(passage_text(document.title, words))
            assert year == document.year
