"""Ranking: stemmed BM25 terms, title lines in passages, fusion of documents, concurrent search."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from medgraph.knowledge.chunking import chunk_document, passage_text
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.fusion import (
    best_per_document,
    by_document,
    document_rankings,
    reciprocal_rank_fusion,
    zscore_fusion,
)
from medgraph.knowledge.index import LiteratureIndex
from medgraph.knowledge.lexical import LexicalIndex, tokenize
from medgraph.knowledge.types import Document
from tests.knowledge.index_support import HashEmbedder, write_jsonl


def _count_words(text: str) -> int:
    return len(text.split())


# -- tokenisation ------------------------------------------------------------------------------


def test_tokenize_stems_so_inflections_share_a_term() -> None:
    assert tokenize("expressed")[0] == tokenize("expression")[0]
    assert tokenize("Mutations")[0] == tokenize("mutation")[0]
    assert tokenize("Which of the genes does") == ["gene"]


def test_stemmed_query_finds_the_other_inflection() -> None:
    index = LexicalIndex.build(
        ids=["c1", "c2"],
        texts=["GDF15 expression rises in heart failure.", "Aspirin and platelets."],
        source_ids=["d1", "d2"],
        years=[None, None],
        generation=1,
    )
    assert [hit for hit, _ in index.search("Where is GDF15 expressed?", 5)] == ["c1"]
    assert index.search(tokenize("expressed"), 5) == index.search("expressed", 5)


# -- passages: the title line ------------------------------------------------------------------


def test_passage_puts_the_title_line_above_the_chunk() -> None:
    passage = passage_text("Zinc  and\ncolds", "Lozenges helped.")
    assert passage == "Zinc and colds\nLozenges helped."
    assert passage_text(None, "Lozenges helped.") == "Lozenges helped."
    assert passage_text("   ", "Lozenges helped.") == "Lozenges helped."


def test_title_tokens_come_out_of_each_chunk_budget() -> None:
    text = " ".join(f"Sentence number {i} has six words." for i in range(12))
    titled = Document(source_id="d1", title="A four word title", text=text)
    plain = titled.model_copy(update={"title": None})
    max_tokens = 20
    chunks = chunk_document(titled, _count_words, max_tokens, 0)
    for chunk in chunks:
        assert _count_words(passage_text(titled.title, chunk.text)) <= max_tokens
    assert len(chunks) > len(chunk_document(plain, _count_words, max_tokens, 0))
    # the passage, title included, is what the id hashes: a new title gives new ids
    retitled = titled.model_copy(update={"title": "Another four word title"})
    new_ids = {c.chunk_id for c in chunk_document(retitled, _count_words, max_tokens, 0)}
    assert new_ids.isdisjoint(c.chunk_id for c in chunks)


def test_a_long_title_takes_at_most_half_the_budget() -> None:
    document = Document(source_id="d1", title="word " * 50, text="One two three four five six.")
    chunks = chunk_document(document, _count_words, 10, 0)
    assert [c.text for c in chunks] == ["One two three four five", "six."]


# -- fusion over documents ---------------------------------------------------------------------

_DOCUMENT = {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "c2": "C"}


def test_document_rankings_rank_a_document_at_its_best_chunk() -> None:
    rankings = {"dense": ["a1", "b1", "a2"], "lexical": ["c1", "a2", "c2", "b1"]}
    assert document_rankings(rankings, _DOCUMENT.__getitem__) == {
        "dense": ["A", "B"],
        "lexical": ["C", "A", "B"],
    }


def test_fusing_documents_credits_both_lists_when_each_found_another_chunk() -> None:
    # A's title chunk leads one list and its abstract chunk the other; B is second in both.
    rankings = {"dense": ["a1", "b1", "c1"], "lexical": ["a2", "b1", "c1"]}
    by_chunk = [item.item_id for item in reciprocal_rank_fusion(rankings)]
    assert by_chunk[0] == "b1"
    documents = reciprocal_rank_fusion(document_rankings(rankings, _DOCUMENT.__getitem__))
    assert [item.item_id for item in documents] == ["A", "B", "C"]


def test_by_document_gives_every_document_its_best_chunk_first() -> None:
    chunks = ["a1", "a2", "c1", "b1", "c2"]
    assert by_document(chunks, _DOCUMENT.__getitem__, ["A", "B", "C"]) == [
        "a1",
        "b1",
        "c1",
        "a2",
        "c2",
    ]
    assert by_document(chunks, _DOCUMENT.__getitem__, ["C"]) == ["c1", "c2"]


# -- the index ---------------------------------------------------------------------------------


def _records() -> list[dict[str, object]]:
    filler: list[dict[str, object]] = [
        {"pmid": str(100 + i), "title": f"Unrelated study {i}", "sections": [
            {"label": "ABSTRACT", "text": f"Cohort {i} measured blood pressure and sleep."}
        ]}
        for i in range(8)
    ]  # fmt: skip
    target: dict[str, object] = {
        "pmid": "42",
        "title": "Nfat signalling in cardiac hypertrophy",
        "sections": [{"label": "ABSTRACT", "text": "miR-25 represses the pathway in mice."}],
    }
    return [*filler, target]


@pytest.fixture
def index(tmp_path: Path) -> LiteratureIndex:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", _records())
    literature = LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "index"), embedder=HashEmbedder()
    )
    literature.ingest([corpus], progress=False)
    return literature


def test_lexical_search_matches_the_title_of_the_chunk_document(index: LiteratureIndex) -> None:
    with index:
        hits = index.search("combined effect of Nfat and miR-25", k=3, mode="lexical")
        assert hits[0].source_id == "42"
        assert hits[0].chunk.text == "miR-25 represses the pathway in mice."
        assert index.search("cardiac hypertrophy", k=1, mode="lexical")[0].source_id == "42"


def test_hybrid_returns_distinct_documents_first(index: LiteratureIndex) -> None:
    with index:
        hits = index.search("cohort blood pressure sleep study", k=5, mode="hybrid")
        assert len({hit.source_id for hit in hits}) == len(hits) == 5
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True)


def _document_scores(index: LiteratureIndex, query: str, mode: str) -> list[tuple[str, float]]:
    hits = index.search(query, k=100, mode=mode)  # the whole corpus: the hybrid pool holds it all
    return best_per_document(
        [(hit.chunk.chunk_id, hit.scores[mode]) for hit in hits],
        {hit.chunk.chunk_id: hit.source_id for hit in hits}.__getitem__,
    )


def _by_score(scores: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


@pytest.mark.parametrize("fusion", ["zscore", "rrf"])
def test_hybrid_fuses_the_document_scores_of_both_retrievers(tmp_path: Path, fusion: str) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", _records())
    settings = KnowledgeSettings(index_dir=tmp_path / "index", fusion=fusion)
    query = "Nfat pathway, 3 or 4"
    with LiteratureIndex(settings, embedder=HashEmbedder()) as index:
        index.ingest([corpus], progress=False)
        runs = {mode: _document_scores(index, query, mode) for mode in ("dense", "lexical")}
        hybrid = index.search(query, k=9, mode="hybrid")
        documents = index._open_searcher().lexical_index().documents
        assert documents is not None
        whole = dict(documents.search(query, 100))
    if fusion == "zscore":
        # BM25 scores every candidate document (0.0 where no query term occurs), by its best
        # chunk and as a whole document; the dense run keeps its own pool
        candidates = [source for source, _ in runs["dense"]]
        chunk_best = dict(runs["lexical"])
        expected = zscore_fusion(
            {
                "dense": runs["dense"],
                "lexical": _by_score({s: chunk_best.get(s, 0.0) for s in candidates}),
                "documents": _by_score({s: whole.get(s, 0.0) for s in candidates}),
            }
        )
    else:
        expected = reciprocal_rank_fusion(
            {mode: [source for source, _ in run] for mode, run in runs.items()}, k=60
        )
    assert len(runs["lexical"]) < len(runs["dense"]) == 9  # lexical misses some documents
    assert [hit.source_id for hit in hybrid] == [item.item_id for item in expected]
    assert [hit.scores["fused"] for hit in hybrid] == pytest.approx([i.score for i in expected])


class _WaitingEmbedder(HashEmbedder):
    """Embeds a query only once BM25 has started: a search that does one after the other hangs."""

    def __init__(self, started: threading.Event) -> None:
        super().__init__()
        self.started = started

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        assert self.started.wait(timeout=10), "BM25 did not run while the query was embedded"
        return super().embed_queries(texts)


def test_hybrid_runs_bm25_while_the_query_is_embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", _records())
    started = threading.Event()
    settings = KnowledgeSettings(index_dir=tmp_path / "index")
    with LiteratureIndex(settings, embedder=HashEmbedder()) as literature:
        literature.ingest([corpus], progress=False)
    original = LexicalIndex.search

    def search(self: LexicalIndex, *args: object, **kwargs: object) -> object:
        started.set()
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(LexicalIndex, "search", search)
    with LiteratureIndex(settings, embedder=_WaitingEmbedder(started)) as literature:
        hits = literature.search("Nfat miR-25", k=2, mode="hybrid")
    assert hits[0].source_id == "42"


def test_hybrid_shows_a_document_only_whole_document_bm25_pooled(tmp_path: Path) -> None:
    # 120 studies name one of the query's four words two to four times in one short chunk; a
    # review of the same length names all four once, each in another chunk. Every study's chunk
    # outranks the review's in both chunk pools (100 chunks), while as a whole document the
    # review leads.
    words = ["ketamine", "tinnitus", "cochlear", "implant"]

    # one sentence of about 30 words: a chunk (40 words at most) holds one such sentence
    aside = "among unrelated matters such as weather, travel, food, music, rivers, lakes, hills, "
    aside += (
        "towns, roads, bridges, trains, ships, birds, trees, flowers, clouds and distant stars."
    )

    def text(named: list[str], times: int = 1) -> str:
        if len(named) == 1:  # a study: the word in its first, short chunk
            return f"{' '.join([named[0]] * times).capitalize()} came up. " + " ".join(
                f"Part {n} is {aside}" for n in range(4)
            )
        return " ".join(
            f"{word.title()} came up in part {n}, {aside}" for n, word in enumerate(named)
        )

    filler = [
        {"pmid": str(1000 + i), "title": f"Study {i}",
         "sections": [{"label": "A", "text": text([words[i % 4]], 2 + i % 3)}]}
        for i in range(120)
    ]  # fmt: skip
    review = text(words)
    target = {"pmid": "7", "title": "A review", "sections": [{"label": "A", "text": review}]}
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [*filler, target])
    query = " ".join(words)
    with LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "index"), embedder=HashEmbedder()
    ) as index:
        index.ingest([corpus], progress=False)
        assert len(index.get_chunks("7")) == 4
        for mode in ("dense", "lexical"):
            assert "7" not in {hit.source_id for hit in index.search(query, k=100, mode=mode)}
        hits = index.search(query, k=10, mode="hybrid")
    shown = [hit for hit in hits if hit.source_id == "7"]
    assert len(shown) == 1 and shown[0].chunk.text in review
