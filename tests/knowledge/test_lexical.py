"""BM25 index: tokenisation, ranking, exact filter masks, atomic save and load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medgraph.knowledge.lexical import K1, B, LexicalIndex, tokenize


def _index(generation: int = 3) -> LexicalIndex:
    return LexicalIndex.build(
        ids=["c1", "c2", "c3", "c4"],
        texts=[
            "Metformin lowers glucose in type 2 diabetes.",
            "Aspirin after myocardial infarction reduces mortality.",
            "Metformin and lactic acidosis: a review of case reports.",
            "Statins lower LDL cholesterol.",
        ],
        source_ids=["d1", "d2", "d3", "d4"],
        years=[2001, 2010, 2015, None],
        generation=generation,
    )


def test_tokenize_lowercases_drops_stopwords_keeps_numbers() -> None:
    assert tokenize("The IL-6 levels of THE patients: 2.5") == [
        "il",
        "6",
        "level",
        "patient",
        "2",
        "5",
    ]


def test_search_ranks_matching_chunks_and_drops_non_matches() -> None:
    index = _index()
    hits = index.search("metformin lactic acidosis", k=10)
    assert [chunk_id for chunk_id, _ in hits] == ["c3", "c1"]
    assert hits[0][1] > hits[1][1] > 0
    assert index.search("the of and", k=5) == []  # only stopwords
    assert index.search("unknownword", k=5) == []


def test_k_larger_than_corpus_is_clamped() -> None:
    assert len(_index().search("metformin", k=100)) == 2


def test_mask_filters_exactly() -> None:
    index = _index()
    mask = index.mask(year_min=2005)
    assert mask is not None and mask.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert [c for c, _ in index.search("metformin", 10, mask)] == ["c3"]
    only_d1 = index.mask(source_ids=["d1"])
    assert [c for c, _ in index.search("metformin", 10, only_d1)] == ["c1"]
    assert index.mask(year_max=2001, source_ids=["d3"]).tolist() == [0.0, 0.0, 0.0, 0.0]  # type: ignore[union-attr]
    assert index.mask() is None


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    index = _index(generation=7)
    folder = tmp_path / "bm25"
    first = index.save(folder)
    assert LexicalIndex.saved_generation(folder) == 7
    loaded = LexicalIndex.load(folder)
    assert loaded is not None
    assert loaded.generation == 7 and loaded.ids == index.ids
    assert loaded.search("aspirin mortality", 3) == index.search("aspirin mortality", 3)
    assert loaded.mask(year_min=2012).tolist() == [0.0, 0.0, 1.0, 0.0]  # type: ignore[union-attr]
    # a newer generation replaces the pointer; the files of the one before it are removed
    # (the previous manifest stays, for a reader that was loading it)
    _index(generation=8).save(folder)
    third = _index(generation=9).save(folder)
    assert not first.exists() and third.exists()
    assert json.loads((folder / "current.json").read_text())["generation"] == 9
    assert len(list(folder.glob("s-*"))) == 2


def test_load_of_missing_or_corrupt_folder_is_none(tmp_path: Path) -> None:
    assert LexicalIndex.load(tmp_path / "absent") is None
    folder = tmp_path / "bm25"
    folder.mkdir()
    (folder / "current.json").write_text("{broken")
    assert LexicalIndex.load(folder) is None
    assert LexicalIndex.saved_generation(folder) is None


def test_empty_index_searches_nothing(tmp_path: Path) -> None:
    empty = LexicalIndex.build([], [], [], [], generation=1)
    assert empty.search("anything", 5) == []
    empty.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25")
    assert loaded is not None and len(loaded) == 0


def test_misaligned_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="same length"):
        LexicalIndex.build(["a"], ["x", "y"], ["s"], [None], generation=1)


# -- segments: incremental adds, deletes, replacements, merges ------------------------------------


def _sentences() -> list[str]:
    """Real abstract sentences from the shared PubMedQA corpus (about ten thousand)."""
    import re

    from tests.knowledge.index_support import corpus_records

    sentences: list[str] = []
    for record in corpus_records():
        for section in record["sections"]:
            sentences.extend(s for s in re.split(r"(?<=\.)\s+", section["text"]) if len(s) > 20)
    return sentences


def _chunks(count: int, start: int = 0) -> tuple[list[str], list[str], list[str], list[int | None]]:
    """``count`` chunk-sized texts (two real sentences each) with ids, documents and years."""
    sentences = _sentences()
    texts = [
        f"{sentences[i % len(sentences)]} {sentences[(7 * i + 3) % len(sentences)]}"
        for i in range(start, start + count)
    ]
    ids = [f"chunk-{i}" for i in range(start, start + count)]
    sources = [f"doc-{i // 4}" for i in range(start, start + count)]
    years: list[int | None] = [
        None if i % 11 == 0 else 1990 + i % 30 for i in range(start, start + count)
    ]
    return ids, texts, sources, years


QUERIES = [
    "metformin insulin glucose",
    "randomized trial of aspirin after myocardial infarction mortality",
    "children asthma inhaled corticosteroids",
    "patients patients surgery outcome",
    "laparoscopic cholecystectomy complications",
]


def _documents(
    ids: list[str], texts: list[str], sources: list[str], years: list[int | None]
) -> dict[str, tuple[str, int | None]]:
    """Document-level rows of the chunks: each source's chunk texts joined, its first year."""
    rows: dict[str, tuple[str, int | None]] = {}
    for text, source, year in zip(texts, sources, years, strict=True):
        held = rows.get(source)
        rows[source] = (text, year) if held is None else (f"{held[0]} {text}", held[1])
    return rows


def _assert_same_results(left: LexicalIndex, right: LexicalIndex, k: int = 25) -> None:
    for query in QUERIES:
        for where in ({}, {"year_min": 2000}, {"source_ids": ["doc-3", "doc-40", "doc-900"]}):
            got = left.search(query, k, left.mask(**where))  # type: ignore[arg-type]
            want = right.search(query, k, right.mask(**where))  # type: ignore[arg-type]
            assert [c for c, _ in got] == [c for c, _ in want], (query, where)
            assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9)


def test_scores_equal_bm25s_with_the_same_parameters() -> None:
    import bm25s

    ids, texts, _, _ = _chunks(400)
    index = LexicalIndex.build(ids, texts, ids, [None] * len(ids), generation=1)
    reference = bm25s.BM25(k1=K1, b=B)
    reference.index([tokenize(text) for text in texts], show_progress=False)
    for query in QUERIES:
        tokens = [t for t in tokenize(query) if t in reference.vocab_dict]
        assert tokens, query
        expected = reference.get_scores(tokens)
        for chunk_id, score in index.search(query, 10):
            assert score == pytest.approx(float(expected[ids.index(chunk_id)]), rel=1e-5)


def test_adds_deletes_and_replacements_score_as_a_full_rebuild(tmp_path: Path) -> None:
    ids, texts, sources, years = _chunks(1200)
    rows = dict(zip(ids, zip(texts, sources, years, strict=True), strict=True))
    index = LexicalIndex.build(ids[:600], texts[:600], sources[:600], years[:600], generation=1)
    live = dict(list(rows.items())[:600])
    for step, start in enumerate(range(600, 1200, 100), start=2):
        added = ids[start : start + 100]
        doomed = ids[start - 550 : start - 540]  # chunks of older segments
        replaced = ids[start - 300 : start - 295]  # same ids, new text and year
        new_rows = {chunk_id: rows[chunk_id] for chunk_id in added}
        new_rows.update(
            {chunk_id: (f"metformin replaced {step}", "doc-3", 2020) for chunk_id in replaced}
        )
        index = index.updated(
            generation=step,
            delete=doomed,
            ids=list(new_rows),
            texts=[row[0] for row in new_rows.values()],
            source_ids=[row[1] for row in new_rows.values()],
            years=[row[2] for row in new_rows.values()],
        )
        for chunk_id in doomed:
            live.pop(chunk_id, None)
        live.update(new_rows)
        if step % 2:
            index.save(tmp_path / "bm25")
            loaded = LexicalIndex.load(tmp_path / "bm25")
            assert loaded is not None and loaded.generation == step
            index = loaded
    rebuilt = LexicalIndex.build(
        list(live),
        [row[0] for row in live.values()],
        [row[1] for row in live.values()],
        [row[2] for row in live.values()],
        generation=99,
    )
    assert index.segment_count > 1
    assert len(index) == len(rebuilt) == len(live)
    assert sorted(index.ids) == sorted(live)
    assert index.document_count == rebuilt.document_count
    doc_3 = {chunk_id for chunk_id, row in live.items() if row[1] == "doc-3"}
    assert index.live_ids_of_sources(["doc-3"]) == doc_3
    _assert_same_results(index, rebuilt)


def test_size_tiers_merge_and_drop_deleted_rows() -> None:
    ids, texts, sources, years = _chunks(400)
    index = LexicalIndex.build(ids[:200], texts[:200], sources[:200], years[:200], generation=1)
    for step, start in enumerate(range(200, 400, 10), start=2):
        end = start + 10
        index = index.updated(
            generation=step,
            ids=ids[start:end],
            texts=texts[start:end],
            source_ids=sources[start:end],
            years=years[start:end],
        )
        # four segments of a size tier become one: at most three per tier remain
        assert index.segment_count <= 2 + 3 * 4
    # deleting most of the big segment rewrites it without the deleted rows
    index = index.updated(generation=50, delete=ids[:150])
    assert len(index) == 250 and sorted(index.ids) == sorted(ids[150:])
    rebuilt = LexicalIndex.build(ids[150:], texts[150:], sources[150:], years[150:], generation=1)
    _assert_same_results(index, rebuilt)


def test_saved_segments_are_memory_mapped_and_reused(tmp_path: Path) -> None:
    ids, texts, sources, years = _chunks(300)
    folder = tmp_path / "bm25"
    LexicalIndex.build(ids[:200], texts[:200], sources[:200], years[:200], generation=1).save(
        folder
    )
    (first_segment,) = folder.glob("s-*")
    loaded = LexicalIndex.load(folder)
    assert loaded is not None
    assert all(isinstance(s.rows.base, np.memmap) for s in loaded._segments)
    grown = loaded.updated(
        generation=2,
        delete=["chunk-5"],
        ids=ids[200:],
        texts=texts[200:],
        source_ids=sources[200:],
        years=years[200:],
    )
    grown.save(folder)
    # the first segment is kept as it was (its deleted row is a tombstone file beside it)
    assert first_segment.is_dir() and len(list(folder.glob("s-*"))) == 2
    assert len(list(folder.glob("d-*.npy"))) == 1
    again = LexicalIndex.load(folder)
    assert again is not None and len(again) == 299 and "chunk-5" not in again.ids


def test_adding_ten_documents_to_20k_chunks_costs_under_5_percent_of_a_build(
    tmp_path: Path,
) -> None:
    import time

    ids, texts, sources, years = _chunks(20_045)
    started = time.perf_counter()
    full = LexicalIndex.build(
        ids, texts, sources, years, generation=1, documents=_documents(ids, texts, sources, years)
    )
    full.save(tmp_path / "full")
    build_seconds = time.perf_counter() - started

    head = slice(0, 20_000)
    base = LexicalIndex.build(
        ids[head],
        texts[head],
        sources[head],
        years[head],
        1,
        documents=_documents(ids[head], texts[head], sources[head], years[head]),
    )
    base.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25")
    assert loaded is not None
    tail = slice(20_000, None)
    # doc-5000 straddles the cut: its row is replaced by the whole document
    added = _documents(ids[19_996:], texts[19_996:], sources[19_996:], years[19_996:])
    started = time.perf_counter()  # ten documents of 4-5 chunks: load, add, save
    grown = loaded.updated(
        generation=2,
        ids=ids[tail],
        texts=texts[tail],
        source_ids=sources[tail],
        years=years[tail],
        documents=added,
    )
    grown.save(tmp_path / "bm25")
    add_seconds = time.perf_counter() - started

    assert add_seconds < 0.05 * build_seconds, (add_seconds, build_seconds)
    _assert_same_results(grown, full)
    assert grown.documents is not None and full.documents is not None
    _assert_same_results(grown.documents, full.documents)


def test_another_tokenisation_or_layout_reads_as_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "bm25"
    _index().save(folder)
    monkeypatch.setattr("medgraph.knowledge.lexical.tokenizer_fingerprint", lambda: "other")
    assert LexicalIndex.load(folder) is None


def test_saving_into_another_folder_writes_every_segment(tmp_path: Path) -> None:
    ids, texts, sources, years = _chunks(60)
    LexicalIndex.build(ids[:40], texts[:40], sources[:40], years[:40], 1).save(tmp_path / "a")
    loaded = LexicalIndex.load(tmp_path / "a")
    assert loaded is not None
    grown = loaded.updated(
        generation=2,
        delete=["chunk-1"],
        ids=ids[40:],
        texts=texts[40:],
        source_ids=sources[40:],
        years=years[40:],
    )
    grown.save(tmp_path / "b")
    copy = LexicalIndex.load(tmp_path / "b")
    assert copy is not None and sorted(copy.ids) == sorted(ids[:1] + ids[2:])
    _assert_same_results(copy, grown)


def test_document_level_adds_deletes_and_replacements_score_as_a_full_rebuild(
    tmp_path: Path,
) -> None:
    ids, texts, sources, years = _chunks(800)
    documents = _documents(ids, texts, sources, years)
    names = list(documents)  # doc-0 .. doc-199
    live = {name: documents[name] for name in names[:100]}
    index = LexicalIndex.build([], [], [], [], generation=1, documents=live)
    for step, start in enumerate(range(100, 200, 25), start=2):
        change: dict[str, tuple[str, int | None] | None] = {
            name: documents[name] for name in names[start : start + 25]
        }
        change.update({name: None for name in names[start - 90 : start - 85]})  # deleted
        change.update(
            {name: (f"metformin replaced {step}", 2020) for name in names[start - 60 : start - 57]}
        )
        index = index.updated(generation=step, documents=change)
        for name, row in change.items():
            if row is None:
                live.pop(name, None)
            else:
                live[name] = row
        if step % 2:
            index.save(tmp_path / "bm25")
            loaded = LexicalIndex.load(tmp_path / "bm25")
            assert loaded is not None and loaded.documents is not None
            index = loaded
    rebuilt = LexicalIndex.build([], [], [], [], generation=9, documents=live)
    assert index.documents is not None and rebuilt.documents is not None
    assert index.documents.segment_count > 1
    assert sorted(index.documents.ids) == sorted(live)
    for query in QUERIES:
        got = index.documents.search(query, 20)
        want = rebuilt.documents.search(query, 20)
        assert [c for c, _ in got] == [c for c, _ in want], query
        assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9)


def test_best_scores_are_each_sources_best_row_as_search_scores_it() -> None:
    ids, texts, sources, years = _chunks(400)
    index = LexicalIndex.build(ids[:300], texts[:300], sources[:300], years[:300], generation=1)
    index = index.updated(  # two segments, one deleted row
        generation=2,
        delete=["chunk-9"],
        ids=ids[300:],
        texts=texts[300:],
        source_ids=sources[300:],
        years=years[300:],
    )
    query = tokenize(QUERIES[1])

    def best_of_search(mask: np.ndarray | None) -> dict[str, tuple[str, float]]:
        everything = index.search(query, len(index), mask)  # best first, ties by chunk id
        source_of = index.sources_of([chunk_id for chunk_id, _ in everything])
        best: dict[str, tuple[str, float]] = {}
        for chunk_id, score in everything:
            best.setdefault(source_of[chunk_id], (chunk_id, score))
        return best

    expected = best_of_search(None)
    silent = next(source for source in sorted(index.live_sources()) if source not in expected)
    asked = [*sorted(expected)[:30], silent, "no-such-doc"]
    best = index.best_scores(query, asked)
    assert set(best) == {*sorted(expected)[:30], silent}
    for source in sorted(expected)[:30]:
        assert best[source][0] == expected[source][0]
        assert best[source][1] == pytest.approx(expected[source][1], rel=1e-12)
    assert best[silent][1] == 0.0  # live rows, none with a query term
    # a mask leaves out the rows it drops, as search does
    mask = index.mask(year_min=2005)
    masked = best_of_search(mask)
    scored = {s: v for s, v in index.best_scores(query, asked, mask).items() if v[1] > 0}
    assert scored.keys() == {s for s in masked if s in asked}
    for source, (chunk_id, score) in scored.items():
        assert masked[source][0] == chunk_id
        assert masked[source][1] == pytest.approx(score, rel=1e-12)
