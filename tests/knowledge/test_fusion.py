"""Reciprocal rank fusion and z-score fusion on hand-made rankings."""

from __future__ import annotations

import pytest

from medgraph.knowledge.fusion import best_per_document, reciprocal_rank_fusion, zscore_fusion


def test_scores_are_sums_of_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion({"dense": ["a", "b", "c"], "lexical": ["c", "a"]}, k=10)
    scores = {item.item_id: item.score for item in fused}
    assert scores["a"] == pytest.approx(1 / 11 + 1 / 12)
    assert scores["b"] == pytest.approx(1 / 12)
    assert scores["c"] == pytest.approx(1 / 13 + 1 / 11)
    assert [item.item_id for item in fused] == ["a", "c", "b"]
    assert fused[0].ranks == {"dense": 1, "lexical": 2}
    assert fused[2].ranks == {"dense": 2}


def test_item_in_both_lists_beats_item_first_in_one() -> None:
    fused = reciprocal_rank_fusion({"dense": ["x", "shared"], "lexical": ["y", "shared"]}, k=60)
    assert fused[0].item_id == "shared"


def test_ties_break_by_best_rank_then_first_appearance() -> None:
    # "a" and "b" both score 1/(k+1) + 1/(k+2): an exact tie, and both reach rank 1 somewhere
    fused = reciprocal_rank_fusion({"one": ["a", "b"], "two": ["b", "a"]}, k=5)
    assert fused[0].score == pytest.approx(fused[1].score)
    assert [item.item_id for item in fused] == ["a", "b"]


def test_duplicates_in_one_list_count_once_at_best_rank() -> None:
    fused = reciprocal_rank_fusion({"dense": ["a", "a", "b"]}, k=1)
    scores = {item.item_id: item.score for item in fused}
    assert scores["a"] == pytest.approx(1 / 2)
    assert scores["b"] == pytest.approx(1 / 4)


def test_weights_scale_each_list() -> None:
    fused = reciprocal_rank_fusion(
        {"dense": ["a"], "lexical": ["b"]}, k=1, weights={"lexical": 3.0}
    )
    assert [item.item_id for item in fused] == ["b", "a"]
    assert fused[0].score == pytest.approx(1.5)


def test_empty_and_invalid_input() -> None:
    assert reciprocal_rank_fusion({"dense": [], "lexical": []}) == []
    with pytest.raises(ValueError, match="at least 1"):
        reciprocal_rank_fusion({"dense": ["a"]}, k=0)


# -- z-score fusion ----------------------------------------------------------------------------


def test_zscore_sums_standardised_scores() -> None:
    # dense: mean 0.6, sd sqrt(0.08/3); lexical: mean 5, sd 5
    fused = zscore_fusion(
        {"dense": [("a", 0.8), ("b", 0.6), ("c", 0.4)], "lexical": [("c", 10.0), ("a", 0.0)]}
    )
    sd = (0.08 / 3) ** 0.5
    scores = {item.item_id: item.score for item in fused}
    assert scores["a"] == pytest.approx(0.2 / sd - 1)
    assert scores["c"] == pytest.approx(-0.2 / sd + 1)
    # "b" is missing from the lexical list: it gets that list's lowest standardised score (-1)
    assert scores["b"] == pytest.approx(0.0 - 1)
    assert [item.item_id for item in fused] == ["a", "c", "b"]
    assert fused[0].ranks == {"dense": 1, "lexical": 2}


def test_zscore_lets_a_clear_lead_outweigh_a_narrow_one() -> None:
    # Rank fusion sees "x" and "y" each first once and cannot tell them apart; the lexical list
    # puts "y" far ahead of the rest, the dense list puts "x" barely ahead.
    runs = {
        "dense": [("x", 0.71), ("y", 0.70), ("z", 0.69), ("w", 0.40)],
        "lexical": [("y", 30.0), ("x", 5.0), ("z", 4.0), ("w", 3.0)],
    }
    rrf = reciprocal_rank_fusion({name: [i for i, _ in run] for name, run in runs.items()})
    assert rrf[0].score == pytest.approx(rrf[1].score)
    assert [item.item_id for item in zscore_fusion(runs)][:2] == ["y", "x"]


def test_zscore_is_unchanged_by_rescaling_a_list() -> None:
    runs = {"dense": [("a", 0.9), ("b", 0.5), ("c", 0.1)], "lexical": [("b", 7.0), ("c", 1.0)]}
    scaled = {**runs, "lexical": [(i, 1000 * s + 3) for i, s in runs["lexical"]]}
    assert [(i.item_id, pytest.approx(i.score)) for i in zscore_fusion(runs)] == [
        (i.item_id, i.score) for i in zscore_fusion(scaled)
    ]


def test_zscore_weights_duplicates_flat_lists_and_ties() -> None:
    weighted = zscore_fusion(
        {"dense": [("a", 2.0), ("b", 0.0)], "lexical": [("b", 2.0), ("a", 0.0)]},
        weights={"lexical": 2.0},
    )
    assert [item.item_id for item in weighted] == ["b", "a"]
    assert weighted[0].score == pytest.approx(-1 + 2)
    # a repeated id counts once, at its first entry
    once = zscore_fusion({"dense": [("a", 3.0), ("b", 1.0), ("a", 0.0)]})
    assert {i.item_id: i.score for i in once} == {"a": pytest.approx(1), "b": pytest.approx(-1)}
    # a list of equal scores carries no preference: ties break by best rank, then appearance
    flat = zscore_fusion({"one": [("a", 1.0), ("b", 1.0)], "two": [("b", 4.0), ("a", 4.0)]})
    assert [(i.item_id, i.score) for i in flat] == [("a", 0.0), ("b", 0.0)]
    assert zscore_fusion({"dense": [], "lexical": []}) == []
    assert [i.item_id for i in zscore_fusion({"dense": [], "lexical": [("a", 1.0)]})] == ["a"]


def test_best_per_document_keeps_each_document_at_its_best_chunk() -> None:
    document = {"a1": "A", "a2": "A", "b1": "B"}.__getitem__
    hits = [("a2", 9.0), ("b1", 5.0), ("a1", 4.0)]
    assert best_per_document(hits, document) == [("A", 9.0), ("B", 5.0)]
    assert best_per_document([], document) == []
