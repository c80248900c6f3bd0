"""LiteratureIndex on the embedded Chroma store with a fast hashing embedder.

Covers ingest bookkeeping (incremental, changed documents, metadata-only changes, prune, bad
files), search modes and filters, evidence metadata, errors, the model check, the reranker hook and
the write lock across processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from medgraph.errors import ConfigurationError, IndexUnavailableError
from medgraph.knowledge.chunking import chunk_document
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import InvalidQueryError, LiteratureIndex, SearchFilter
from medgraph.knowledge.readers import read_file
from medgraph.knowledge.types import Chunk
from tests.knowledge.conftest import store_fields
from tests.knowledge.index_support import HashEmbedder, corpus_records, write_jsonl
from tests.support import REPO_ROOT

RECORDS = corpus_records(12)
ARTICLE: dict[str, Any] = {
    "id": "doi:10.1000/test.1",
    "text": (
        "Zinc supplementation shortened the duration of common colds in adults. "
        "Participants took lozenges every two hours while awake. "
        "Adverse effects were mild and mostly limited to taste disturbance."
    ),
    "title": "Zinc lozenges and the common cold",
    "authors": ["Hemila H", "Chalker E"],
    "year": 2017,
    "journal": "JRSM Open",
    "doi": "10.1000/test.1",
}


def _make_index(
    index_dir: Path, embedder: HashEmbedder | None = None, **settings: Any
) -> LiteratureIndex:
    return LiteratureIndex(
        KnowledgeSettings(index_dir=index_dir, **settings), embedder=embedder or HashEmbedder()
    )


def _expected_chunks(
    path: Path, embedder: HashEmbedder, overlap: int = 1
) -> dict[str, list[Chunk]]:
    return {
        document.source_id: chunk_document(
            document, embedder.count_tokens, embedder.max_tokens, overlap
        )
        for document in read_file(path)
    }


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    return {
        "a": write_jsonl(tmp_path / "in" / "a.jsonl", RECORDS[:6]),
        "b": write_jsonl(tmp_path / "in" / "b.jsonl", RECORDS[6:10]),
        "article": write_jsonl(tmp_path / "in" / "article.jsonl", [ARTICLE]),
    }


def _stored_ids(index: LiteratureIndex) -> list[str]:
    store = index._open_for_read()
    return [record.chunk_id for record in store.scan(texts=False)]


def test_ingest_then_search_every_mode(
    tmp_path: Path, corpus: dict[str, Path], store_settings: dict[str, Any]
) -> None:
    embedder = HashEmbedder()
    expected = {}
    for path in corpus.values():
        expected.update(_expected_chunks(path, embedder))
    total = sum(len(chunks) for chunks in expected.values())

    with _make_index(tmp_path / "index", embedder, **store_settings) as index:
        report = index.ingest(list(corpus.values()), progress=False)
        assert report.ok and report.files == 3
        assert report.documents == report.documents_added == len(expected) == 11
        assert report.chunks_added == total == embedder.documents_embedded
        assert report.index_chunks == total and report.index_documents == 11
        stored = _stored_ids(index)
        assert sorted(stored) == sorted(c.chunk_id for cs in expected.values() for c in cs)

        for mode in ("dense", "lexical", "hybrid"):
            hits = index.search("zinc lozenges duration of colds", k=3, mode=mode)
            assert hits and hits[0].source_id == ARTICLE["id"], mode
            top = hits[0]
            assert top.document.title == ARTICLE["title"]
            assert top.document.authors == tuple(ARTICLE["authors"])
            assert (top.document.year, top.document.journal) == (2017, "JRSM Open")
            assert top.document.doi == "10.1000/test.1" and top.document.text == ""
            assert ARTICLE["text"][top.chunk.start : top.chunk.end] == top.chunk.text
            assert top.chunk in expected[ARTICLE["id"]]
            assert top.citation(1).startswith("[1] Hemila H et al. Zinc lozenges")
        dense = index.search("zinc lozenges", k=2, mode="dense")[0]
        assert set(dense.scores) == {"dense", "dense_rank"} and dense.score == dense.scores["dense"]
        hybrid = index.search("zinc lozenges", k=2, mode="hybrid")[0]
        assert {"dense", "lexical", "fused"} <= set(hybrid.scores)
        assert hybrid.score == hybrid.scores["fused"]  # its value: test_ranking.py

        pmid = RECORDS[0]["pmid"]
        document = index.get_document(pmid)
        assert (
            document is not None and document.pmid == pmid and document.year == RECORDS[0]["year"]
        )
        assert index.get_document("no-such-id") is None
        chunks = index.get_chunks(pmid)
        assert [c.chunk_id for c in chunks] == [c.chunk_id for c in expected[pmid]]
        stats = index.stats()
        assert (stats.documents, stats.chunks) == (11, total)
        assert stats.embedding_model == "test-hash-embedder"
    record = json.loads((tmp_path / "index" / "index.json").read_text())
    assert record["embedding_model"] == "test-hash-embedder" and record["dimension"] == 256


def test_reingest_embeds_nothing(
    tmp_path: Path, corpus: dict[str, Path], store_settings: dict[str, Any]
) -> None:
    embedder = HashEmbedder()
    with _make_index(tmp_path / "index", embedder, **store_settings) as index:
        first = index.ingest(list(corpus.values()), progress=False)
        embedded = embedder.documents_embedded
        second = index.ingest(list(corpus.values()), progress=False)
    assert embedder.documents_embedded == embedded
    assert second.chunks_added == second.chunks_removed == second.chunks_updated == 0
    assert second.chunks_unchanged == first.chunks_added
    assert second.documents_unchanged == second.documents == 11
    assert second.index_chunks == first.index_chunks


def test_changed_document_replaces_its_chunks(
    tmp_path: Path, corpus: dict[str, Path], store_settings: dict[str, Any]
) -> None:
    embedder = HashEmbedder()
    with _make_index(tmp_path / "index", embedder, **store_settings) as index:
        index.ingest([corpus["article"]], progress=False)
        old_ids = {c.chunk_id for c in index.get_chunks(ARTICLE["id"])}
        changed = dict(
            ARTICLE,
            text=ARTICLE["text"].replace("taste disturbance", "nausea")
            + (" Benefit was largest when lozenges were started within a day of symptoms."),
        )
        write_jsonl(corpus["article"], [changed])
        wanted = _expected_chunks(corpus["article"], embedder)[ARTICLE["id"]]
        before = embedder.documents_embedded
        report = index.ingest([corpus["article"]], progress=False)

        new_ids = {c.chunk_id for c in wanted}
        assert report.documents_updated == 1
        assert report.chunks_added == len(new_ids - old_ids) == embedder.documents_embedded - before
        assert report.chunks_removed == len(old_ids - new_ids) > 0
        assert [c.chunk_id for c in index.get_chunks(ARTICLE["id"])] == [c.chunk_id for c in wanted]
        assert sorted(_stored_ids(index)) == sorted(new_ids)
        assert index.search("taste disturbance", k=5, mode="lexical") == []
        assert index.search("nausea", k=1, mode="lexical")[0].source_id == ARTICLE["id"]


def test_metadata_change_relabels_without_embedding(
    tmp_path: Path, corpus: dict[str, Path], store_settings: dict[str, Any]
) -> None:
    embedder = HashEmbedder()
    with _make_index(tmp_path / "index", embedder, **store_settings) as index:
        first = index.ingest([corpus["article"]], progress=False)
        write_jsonl(corpus["article"], [dict(ARTICLE, journal="J R Soc Med Open")])
        before = embedder.documents_embedded
        report = index.ingest([corpus["article"]], progress=False)
        assert embedder.documents_embedded == before
        assert report.chunks_updated == first.chunks_added and report.chunks_added == 0
        assert report.documents_updated == 1
        hit = index.search("zinc", k=1, mode="lexical")[0]
        assert hit.document.journal == "J R Soc Med Open"
        # the title heads every embedded passage: a new title is embedded again
        write_jsonl(corpus["article"], [dict(ARTICLE, title="Zinc for colds: a trial")])
        retitled = index.ingest([corpus["article"]], progress=False)
        assert retitled.chunks_added == first.chunks_added == retitled.chunks_removed
        assert embedder.documents_embedded == before + first.chunks_added
        hit = index.search("trial", k=1, mode="lexical")[0]
        assert hit.document.title == "Zinc for colds: a trial"


def test_prune_removes_documents_no_longer_among_inputs(
    tmp_path: Path, corpus: dict[str, Path], store_settings: dict[str, Any]
) -> None:
    with _make_index(tmp_path / "index", **store_settings) as index:
        index.ingest([corpus["a"], corpus["b"]], progress=False)
        kept = index.ingest([corpus["a"]], progress=False)
        assert kept.documents_removed == 0 and kept.index_documents == 10
        pruned = index.ingest([corpus["a"]], prune=True, progress=False)
        assert pruned.documents_removed == 4 and pruned.index_documents == 6
        b_pmids = {record["pmid"] for record in RECORDS[6:10]}
        assert all(index.get_document(pmid) is None for pmid in b_pmids)
        assert not any(hit.source_id in b_pmids for hit in index.search("patients", k=50))
        stats = index.stats()
        assert stats.documents == 6 and stats.chunks == pruned.index_chunks


def test_prune_is_skipped_when_an_input_fails(
    tmp_path: Path, corpus: dict[str, Path], store_settings: dict[str, Any]
) -> None:
    with _make_index(tmp_path / "index", **store_settings) as index:
        index.ingest(list(corpus.values()), progress=False)
        corpus["b"].write_bytes(b"\x89PNG\r\n\x1a\n not literature")
        report = index.ingest([corpus["a"], corpus["b"]], prune=True, progress=False)
        assert [Path(f.path).name for f in report.failures] == ["b.jsonl"]
        # neither b's documents (unreadable) nor the article (not given) are removed
        assert report.documents_removed == 0 and report.index_documents == 11
        assert any("prune skipped" in warning for warning in report.warnings)
        typo = index.ingest([tmp_path / "in" / "a.jsnol"], prune=True, progress=False)
        assert typo.documents_removed == 0 and typo.index_documents == 11


def test_bad_files_are_reported_and_the_rest_ingested(
    tmp_path: Path, corpus: dict[str, Path], store_settings: dict[str, Any]
) -> None:
    broken = tmp_path / "in" / "broken.jsonl"
    broken.write_text('{"pmid": "1", "sections": [{"label": "X", "text": "ok"}]}\n{oops\n')
    missing = tmp_path / "in" / "missing.jsonl"
    with _make_index(tmp_path / "index", **store_settings) as index:
        report = index.ingest([corpus["a"], broken, missing], progress=False)
    reasons = {Path(f.path).name: f.reason for f in report.failures}
    assert set(reasons) == {"broken.jsonl", "missing.jsonl"}
    assert "line 2" in reasons["broken.jsonl"] and "no such file" in reasons["missing.jsonl"]
    assert not report.ok and report.documents == 6 and report.index_documents == 6
    assert "broken.jsonl" in report.summary() and "could not be read" in report.summary()


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_filters_apply_in_every_mode(
    tmp_path: Path, corpus: dict[str, Path], mode: str, store_settings: dict[str, Any]
) -> None:
    years = {record["pmid"]: record["year"] for record in RECORDS[:10]}
    years[ARTICLE["id"]] = ARTICLE["year"]
    low, high = sorted(set(years.values()))[1], sorted(set(years.values()))[-2]
    with _make_index(tmp_path / "index", **store_settings) as index:
        index.ingest(list(corpus.values()), progress=False)
        query = "patients study results"
        unfiltered = index.search(query, k=1000, mode=mode)
        hits = index.search(query, k=1000, mode=mode, where={"year": {"gte": low, "lte": high}})
        assert hits and all(low <= years[hit.source_id] <= high for hit in hits)
        assert {h.chunk.chunk_id for h in hits} < {h.chunk.chunk_id for h in unfiltered}
        chosen = [RECORDS[1]["pmid"], RECORDS[7]["pmid"]]
        hits = index.search(query, k=100, mode=mode, where={"source_ids": chosen})
        assert hits and {hit.source_id for hit in hits} <= set(chosen)
        assert index.search(query, k=5, mode=mode, where={"year": 1800}) == []
        assert index.search(query, k=5, mode=mode, where={"source_ids": []}) == []


def test_filter_validation() -> None:
    assert SearchFilter.parse({"year": 2012}) == SearchFilter(2012, 2012, None)
    assert SearchFilter.parse({"year": {"gte": 2010}}).chroma_where() == {"year": {"$gte": 2010}}
    both = SearchFilter.parse({"year": {"lte": 2015}, "source_ids": ["1"]}).chroma_where()
    assert both == {"$and": [{"year": {"$lte": 2015}}, {"source_id": {"$in": ["1"]}}]}
    uploads = SearchFilter.parse({"year": {"gte": 2010}, "origins": ['upload:"a"\\b']})
    assert uploads.milvus_expr() == '(year >= 2010) and (origin in ["", "upload:\\"a\\"\\\\b"])'
    assert SearchFilter.parse({"source_ids": []}).milvus_expr() == '(source_id in [""])'
    assert SearchFilter.parse(None).milvus_expr() == ""
    for bad, message in [
        ({"journal": "x"}, "unknown filter key"),
        ({"year": {"from": 2010}}, "'gte' and/or 'lte'"),
        ({"year": "2010"}, "integers"),
        ({"year": {"gte": 2016, "lte": 2010}}, "empty"),
        ({"source_ids": "123"}, "list of ids"),
    ]:
        with pytest.raises(InvalidQueryError, match=message):
            SearchFilter.parse(bad)


def test_missing_index_and_bad_requests(
    tmp_path: Path, corpus: dict[str, Path], store_settings: dict[str, Any]
) -> None:
    absent = tmp_path / "nowhere"
    with pytest.raises(
        IndexUnavailableError, match=r"no literature index.*ingest PATH --index .*nowhere"
    ):
        _make_index(absent, **store_settings).search("anything")
    assert not absent.exists()
    with _make_index(tmp_path / "index", **store_settings) as index:
        index.ingest([corpus["a"]], progress=False)
        with pytest.raises(InvalidQueryError, match="empty"):
            index.search("   ")
        with pytest.raises(InvalidQueryError, match="unknown search mode"):
            index.search("x", mode="semantic")
        with pytest.raises(InvalidQueryError, match="positive integer"):
            index.search("x", k=0)


def test_an_index_emptied_under_a_reader_says_it_holds_no_chunks(
    tmp_path: Path, corpus: dict[str, Path], store_settings: dict[str, Any]
) -> None:
    with _make_index(tmp_path / "index", **store_settings) as index:
        index.ingest([corpus["a"]], progress=False)
        assert index.search("aquagenic urticaria", k=3)
        # a filter that hides every record finds nothing, which is not an empty index
        assert index.search("aquagenic urticaria", where={"year": {"gte": 2090}}) == []
        # another client empties the store behind the index's back (no ingest, no generation)
        store = index._open_for_read()
        store.delete(list(store.scan_ids()))
        assert store.count() == 0
    with _make_index(tmp_path / "index", **store_settings) as index:
        for mode in ("dense", "lexical", "hybrid"):
            with pytest.raises(IndexUnavailableError, match="holds no chunks"):
                index.search("aquagenic urticaria", mode=mode)


def test_index_refuses_a_different_embedding_model(
    tmp_path: Path, corpus: dict[str, Path], store_settings: dict[str, Any]
) -> None:
    with _make_index(tmp_path / "index", HashEmbedder(name="model-a"), **store_settings) as index:
        index.ingest([corpus["a"]], progress=False)
    other = _make_index(tmp_path / "index", HashEmbedder(name="model-b"), **store_settings)
    with pytest.raises(ConfigurationError, match=r"model-a.*model-b|built with"):
        other.search("anything")
    with pytest.raises(ConfigurationError, match="model-a"):
        other.ingest([corpus["a"]], progress=False)
    # the failed writer released the lock: a matching writer can ingest while `other` is open
    with _make_index(tmp_path / "index", HashEmbedder(name="model-a"), **store_settings) as index:
        assert index.ingest([corpus["b"]], progress=False).documents_added == 4
    other.close()
    wrong_size = _make_index(
        tmp_path / "index", HashEmbedder(name="model-a", dimension=64), **store_settings
    )
    with pytest.raises(ConfigurationError, match="256-dimensional"):
        wrong_size.ingest([corpus["a"]], progress=False)
    wrong_size.close()


def test_reranker_reorders_candidates(
    tmp_path: Path, corpus: dict[str, Path], store_settings: dict[str, Any]
) -> None:
    seen: list[int] = []

    def prefer_short(query: str, passages: list[str]) -> list[float]:
        seen.append(len(passages))
        return [-float(len(passage)) for passage in passages]

    with _make_index(tmp_path / "index", **store_settings) as index:
        index.ingest([corpus["a"], corpus["b"]], progress=False)
    reranked = LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "index", **store_settings),
        embedder=HashEmbedder(),
        reranker=prefer_short,
    )
    hits = reranked.search("patients treatment outcome", k=4)
    assert seen == [20]  # max(3k, 20) fused candidates were rescored
    lengths = [len(hit.chunk.text) for hit in hits]
    assert lengths == sorted(lengths) and len(hits) == 4
    assert all(hit.score == hit.scores["rerank"] == -len(hit.chunk.text) for hit in hits)


@pytest.mark.parametrize("store", ["chroma", "milvus-lite"])
def test_second_writer_process_gets_a_clear_error(
    tmp_path: Path, corpus: dict[str, Path], store: str, request: pytest.FixtureRequest
) -> None:
    """A local store has one writing process (a server store lets several write)."""
    store_settings = store_fields(request, store)
    index_dir = tmp_path / "index"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.knowledge.index_support",
            str(index_dir),
            str(corpus["a"]),
            "64",
            "0",
            "hold",
            json.dumps(store_settings),
        ],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        line = holder.stdout.readline()
        while line.startswith("EMBED"):
            line = holder.stdout.readline()
        assert line.startswith("DONE"), line
        with _make_index(index_dir, **store_settings) as index:
            with pytest.raises(IndexUnavailableError) as caught:
                index.ingest([corpus["b"]], progress=False)
            message = str(caught.value)
            assert f"in use by another process (pid {holder.pid})" in message
            assert ("Milvus server" if store_settings else "Chroma server") in message
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
    with _make_index(index_dir, **store_settings) as index:
        assert index.ingest([corpus["b"]], progress=False).documents_added == 4


@pytest.mark.parametrize("store", ["chroma", "milvus-lite"])
def test_second_writer_in_the_same_process_is_told_to_close(
    tmp_path: Path, corpus: dict[str, Path], store: str, request: pytest.FixtureRequest
) -> None:
    store_settings = store_fields(request, store)
    first = _make_index(tmp_path / "index", **store_settings)
    first.ingest([corpus["a"]], progress=False)
    second = _make_index(tmp_path / "index", **store_settings)
    with pytest.raises(IndexUnavailableError, match=r"this process.*close\(\)"):
        second.ingest([corpus["b"]], progress=False)
    assert second.search("patients", k=1)  # readers need no lock
    first.close()
    assert second.ingest([corpus["b"]], progress=False).documents_added == 4
    second.close()


def test_importing_the_package_loads_no_heavy_modules() -> None:
    code = (
        "import sys; import medgraph.knowledge as k; k.LiteratureIndex; k.Evidence; "
        "heavy = ('torch', 'chromadb', 'pymilvus', 'sentence_transformers', 'bm25s'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_hybrid_reads_the_records_of_returned_passages_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_settings: dict[str, Any]
) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_records(30))
    query = "patients treatment outcome"
    with LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "index", **store_settings), embedder=HashEmbedder()
    ) as index:
        index.ingest([corpus], progress=False)
        # an origins filter that hides nothing takes the path that reads every candidate's record
        full = index.search(query, k=5, mode="hybrid", where={"origins": []})
        store = index._open_for_read()
        read: list[str] = []
        get = store.get

        def counting_get(ids: Any) -> Any:
            read.extend(ids)
            return get(ids)

        monkeypatch.setattr(store, "get", counting_get)
        lean = index.search(query, k=5, mode="hybrid")
    assert len(full) == 5
    assert [hit.model_dump() for hit in lean] == [hit.model_dump() for hit in full]
    assert sorted(read) == sorted(hit.chunk.chunk_id for hit in lean)  # 5 of its 40 candidates
