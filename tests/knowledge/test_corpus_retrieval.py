"""Retrieval on the real PubMedQA corpus (1,000 abstracts) with the packaged MiniLM model.

The corpus is ingested ONCE per test session, by ``python -m medgraph ingest`` in a subprocess whose
Hugging Face cache is an empty folder and whose Hub access is off: this is also the proof that a
fresh machine indexes with no Hub access. On this project's 2-core machine that ingest takes about
2-4 minutes (embedding ~4,500 chunks dominates); the time is printed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from medgraph.knowledge.config import DEFAULT_EMBEDDING_MODEL
from medgraph.knowledge.evaluation import distinct_in_order, hit_at, load_questions, reciprocal_rank
from medgraph.knowledge.fusion import best_per_document, zscore_fusion
from medgraph.knowledge.index import LiteratureIndex
from tests.knowledge.index_support import corpus_records, pubmedqa_dir
from tests.knowledge.test_cli_knowledge import run_cli
from tests.support import IngestedCorpus

pytestmark = pytest.mark.slow

DEV_SAMPLE = 100


@pytest.fixture(scope="module")
def index(pubmedqa_corpus: IngestedCorpus) -> Iterator[LiteratureIndex]:
    with LiteratureIndex(index_dir=pubmedqa_corpus.index_dir) as opened:
        yield opened


@pytest.fixture(scope="module")
def dev_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = (pubmedqa_dir() / "dev.jsonl").read_text(encoding="utf-8").split("\n")[:DEV_SAMPLE]
    path = tmp_path_factory.mktemp("dev") / "dev-sample.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_offline_ingest_indexed_the_whole_corpus(
    pubmedqa_corpus: IngestedCorpus, index: LiteratureIndex
) -> None:
    stats = index.stats()
    assert stats.documents == 1000 and stats.embedding_model == DEFAULT_EMBEDDING_MODEL
    assert f"The index holds {stats.chunks} chunks of 1000 documents" in pubmedqa_corpus.summary
    assert stats.chunks >= 1000  # every abstract has several sections
    record = json.loads((pubmedqa_corpus.index_dir / "index.json").read_text())
    assert record["embedding_model"] == DEFAULT_EMBEDDING_MODEL and record["dimension"] == 384


def test_every_mode_finds_gold_abstracts(index: LiteratureIndex) -> None:
    records = {record["pmid"]: record for record in corpus_records()}
    questions = load_questions(pubmedqa_dir() / "dev.jsonl")[:25]
    for mode in ("dense", "lexical", "hybrid"):
        found = 0.0
        for question in questions:
            hits = index.search(question.question, k=30, mode=mode)
            assert hits, mode
            for hit in hits[:3]:
                record = records[hit.source_id]
                assert any(hit.chunk.text in section["text"] for section in record["sections"])
                assert hit.document.pmid == hit.source_id
                assert hit.document.year == record.get("year")
                assert hit.citation(1).endswith(f"PMID:{hit.source_id}")
            ranking = distinct_in_order(hit.source_id for hit in hits)
            found += hit_at(ranking, question.gold_ids, 10)
        # questions are written from their abstracts, so each retriever finds most of them
        assert found / len(questions) >= 0.6, mode


def test_hybrid_fuses_the_real_dense_and_lexical_rankings(index: LiteratureIndex) -> None:
    question = load_questions(pubmedqa_dir() / "dev.jsonl")[0].question
    k = 5
    # hybrid pools 100 chunks per retriever whatever k: the same pools as these searches
    single = {mode: index.search(question, k=100, mode=mode) for mode in ("dense", "lexical")}
    # each retriever scores a document by its best chunk; the lists are fused by z-score
    document_of = {h.chunk.chunk_id: h.source_id for hits in single.values() for h in hits}
    runs = {
        mode: best_per_document(
            [(h.chunk.chunk_id, h.scores[mode]) for h in hits], document_of.__getitem__
        )
        for mode, hits in single.items()
    }
    # BM25 also pools 100 whole documents, and scores every candidate document exactly by its
    # best chunk and as a whole document (0.0 where no query word occurs)
    bm25 = index._open_searcher().lexical_index()
    assert bm25.documents is not None
    whole = dict(bm25.documents.search(question, len(bm25.documents)))
    everything = bm25.search(question, len(bm25))
    best_chunk = dict(best_per_document(everything, bm25.sources_of(c for c, _ in everything).get))
    candidates = {source for run in runs.values() for source, _ in run}
    candidates |= {source for source, _ in bm25.documents.search(question, 100)}

    def exact(scores: dict[str, float]) -> list[tuple[str, float]]:
        return sorted(((s, scores.get(s, 0.0)) for s in candidates), key=lambda p: (-p[1], p[0]))

    runs = {"dense": runs["dense"], "lexical": exact(best_chunk), "documents": exact(whole)}
    expected = {item.item_id: item.score for item in zscore_fusion(runs)}
    chunk_ranks = {
        mode: {h.chunk.chunk_id: h.scores[f"{mode}_rank"] for h in hits}
        for mode, hits in single.items()
    }
    hybrid = index.search(question, k=k, mode="hybrid")
    assert len(hybrid) == k == len({hit.source_id for hit in hybrid})
    for hit in hybrid:
        for mode in single:
            if f"{mode}_rank" in hit.scores:
                assert hit.scores[f"{mode}_rank"] == chunk_ranks[mode][hit.chunk.chunk_id]
        assert hit.score == pytest.approx(expected[hit.source_id])
    assert [h.score for h in hybrid] == pytest.approx(sorted(expected.values(), reverse=True)[:k])


def test_year_filter_on_the_corpus(
    index: LiteratureIndex, pubmedqa_corpus: IngestedCorpus, capsys: pytest.CaptureFixture[str]
) -> None:
    hits = index.search(
        "randomized trial outcomes", k=20, mode="hybrid", where={"year": {"gte": 2010, "lte": 2012}}
    )
    assert hits and all(hit.document.year and 2010 <= hit.document.year <= 2012 for hit in hits)
    code, out, _ = run_cli(
        [
            "search",
            "randomized trial outcomes",
            "--index",
            str(pubmedqa_corpus.index_dir),
            "--year-max",
            "2005",
            "--json",
        ],
        capsys,
    )
    years = [hit["document"]["year"] for hit in json.loads(out)]
    assert code == 0 and years and all(year <= 2005 for year in years)


def test_eval_retrieval_cli_matches_rankings_computed_here(
    pubmedqa_corpus: IngestedCorpus,
    index: LiteratureIndex,
    dev_sample: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    k = 5
    code, out, err = run_cli(
        [
            "eval",
            "retrieval",
            "--questions",
            str(dev_sample),
            "--index",
            str(pubmedqa_corpus.index_dir),
            "-k",
            str(k),
            "--mode",
            "all",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    results = json.loads(out)
    assert set(results) == {"dense", "lexical", "hybrid"}
    for mode, metrics in results.items():
        assert metrics["questions"] == DEV_SAMPLE and metrics["k"] == k
        assert 0.0 <= metrics["hit_at_1"] <= metrics["hit_at_k"] <= 1.0, mode
        assert metrics["recall_at_k"] == pytest.approx(metrics["hit_at_k"])  # one gold each
        assert metrics["hit_at_1"] <= metrics["mrr_at_10"] <= 1.0
        assert 0 < metrics["latency_p50_ms"] <= metrics["latency_p95_ms"]
        assert metrics["hit_at_k"] >= 0.5, mode

    # Recompute hybrid from rankings obtained here, question by question.
    questions = load_questions(dev_sample)
    hits_at_k = mrr = 0.0
    for question in questions:
        ranking = distinct_in_order(
            hit.source_id for hit in index.search(question.question, k=30, mode="hybrid")
        )[:10]
        hits_at_k += hit_at(ranking, question.gold_ids, k)
        mrr += reciprocal_rank(ranking, question.gold_ids)
    assert results["hybrid"]["recall_at_k"] == pytest.approx(hits_at_k / len(questions))
    assert results["hybrid"]["mrr_at_10"] == pytest.approx(mrr / len(questions))


def test_eval_retrieval_cli_prints_a_table(
    pubmedqa_corpus: IngestedCorpus, dev_sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        [
            "eval",
            "retrieval",
            "--questions",
            str(dev_sample),
            "--index",
            str(pubmedqa_corpus.index_dir),
            "--mode",
            "lexical",
        ],
        capsys,
    )
    assert code == 0
    for header in ("mode", "hit@1", "hit@10", "recall@10", "MRR@10", "p50 ms", "p95 ms", "lexical"):
        assert header in out
    assert f"{DEV_SAMPLE} questions" in out


def test_search_cli_prints_citations(
    pubmedqa_corpus: IngestedCorpus, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        [
            "search",
            "mitochondria in programmed cell death of lace plant leaves",
            "--index",
            str(pubmedqa_corpus.index_dir),
            "-k",
            "3",
        ],
        capsys,
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("[1] ") and "PMID:21645374" in lines[0]
    assert len([line for line in lines if line.startswith("[")]) == 3
