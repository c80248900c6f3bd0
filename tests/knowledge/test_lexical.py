"""BM25 index: tokenisation, ranking, exact filter masks, atomic save and load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgraph.knowledge.lexical import LexicalIndex, tokenize


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
    # a newer generation replaces the pointer and removes the old folder
    second = _index(generation=8).save(folder)
    assert not first.exists() and second.exists()
    assert json.loads((folder / "current.json").read_text())["generation"] == 8


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
