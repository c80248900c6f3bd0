"""Reciprocal rank fusion on hand-made rankings."""

from __future__ import annotations

import pytest

from medgraph.knowledge.fusion import reciprocal_rank_fusion


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
