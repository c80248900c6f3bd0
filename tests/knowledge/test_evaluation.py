"""Retrieval metrics on hand-made rankings, and question-file parsing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from medgraph.knowledge.evaluation import (
    QuestionFileError,
    RetrievalQuestion,
    distinct_in_order,
    evaluate_retrieval,
    hit_at,
    load_questions,
    percentile,
    recall_at,
    reciprocal_rank,
    score_rankings,
    search_rankings,
)


def test_hit_recall_and_reciprocal_rank() -> None:
    ranking = ["d3", "d1", "d7", "d2"]
    assert hit_at(ranking, ["d1"], 1) == 0.0
    assert hit_at(ranking, ["d1"], 2) == 1.0
    assert recall_at(ranking, ["d1", "d2"], 2) == 0.5
    assert recall_at(ranking, ["d1", "d2"], 4) == 1.0
    assert reciprocal_rank(ranking, ["d7"]) == pytest.approx(1 / 3)
    assert reciprocal_rank(ranking, ["d2"], k=3) == 0.0
    assert reciprocal_rank(ranking, ["nothing"]) == 0.0
    with pytest.raises(ValueError):
        recall_at(ranking, [], 3)


def test_distinct_in_order_keeps_first_occurrence() -> None:
    assert distinct_in_order(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_score_rankings_averages_over_questions() -> None:
    rankings = [["a", "b"], ["x", "y", "b"], ["z"]]
    golds = [["a"], ["b"], ["q"]]
    metrics = score_rankings("dense", rankings, golds, k=2, latencies_ms=[10, 20, 30])
    assert metrics.questions == 3
    assert metrics.hit_at_1 == pytest.approx(1 / 3)
    assert metrics.hit_at_k == pytest.approx(1 / 3)  # "b" is third in the second ranking
    assert metrics.mrr_at_10 == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert metrics.latency_p50_ms == pytest.approx(20)
    assert metrics.as_dict()["mode"] == "dense"


def test_percentile_interpolates() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 95) == pytest.approx(4.8)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_load_questions_accepts_gold_ids_and_pmid(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps({"question": "Q1?", "gold_ids": ["a", 7]})
        + "\n\n"
        + json.dumps({"question": " Q2? ", "pmid": "123", "final_decision": "yes"})
        + "\n"
    )
    questions = load_questions(path)
    assert questions == [
        RetrievalQuestion("Q1?", ("a", "7"), 1),
        RetrievalQuestion("Q2?", ("123",), 3),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('["a"]', "line 2: expected a JSON object"),
        ('{"pmid": "1"}', "line 2: 'question' must be"),
        ('{"question": "q"}', "line 2: needs 'gold_ids'"),
        ('{"question": "q", "gold_ids": []}', "line 2: 'gold_ids' must be"),
    ],
)
def test_load_questions_names_the_bad_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "fine", "pmid": "1"}) + "\n" + line + "\n")
    with pytest.raises(QuestionFileError, match=message):
        load_questions(path)


def test_load_questions_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(QuestionFileError, match="does not exist"):
        load_questions(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(QuestionFileError, match="holds no questions"):
        load_questions(tmp_path / "empty.jsonl")


@dataclass
class _Hit:
    source_id: str


class _ScriptedIndex:
    """Returns chunk hits from a fixed table: several chunks per document, as a real index does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    def search(self, query: str, k: int = 10, mode: str = "hybrid") -> list[_Hit]:
        self.calls.append((query, k, mode))
        table = {
            ("q1", "dense"): ["d1", "d1", "d2"],
            ("q2", "dense"): ["d5", "d5", "d5", "d9"],
            ("q1", "lexical"): ["d2", "d1"],
            ("q2", "lexical"): ["d9"],
        }
        return [_Hit(source) for source in table[(query, mode)]][:k]


def test_evaluate_retrieval_scores_document_rankings() -> None:
    index = _ScriptedIndex()
    questions = [RetrievalQuestion("q1", ("d1",)), RetrievalQuestion("q2", ("d9",))]
    results = evaluate_retrieval(index, questions, k=1, modes=("dense", "lexical"))
    # dense: q1 hit at rank 1; q2's chunks collapse to d5, d9 -> gold at document rank 2
    assert results["dense"].hit_at_1 == pytest.approx(0.5)
    assert results["dense"].mrr_at_10 == pytest.approx((1 + 0.5) / 2)
    assert results["lexical"].hit_at_1 == pytest.approx(0.5)
    assert results["lexical"].mrr_at_10 == pytest.approx((0.5 + 1) / 2)
    # searches ask for enough chunks to rank 10 documents; one warm-up call per mode
    assert all(k == 30 for _, k, _ in index.calls)
    assert len(index.calls) == 2 * (len(questions) + 1)


def test_search_rankings_cut_document_rankings_to_depth_and_time_each_question() -> None:
    index = _ScriptedIndex()
    questions = [RetrievalQuestion("q1", ("d1",)), RetrievalQuestion("q2", ("d9",))]
    rankings, latencies = search_rankings(index, questions, "dense", depth=1)
    assert rankings == [["d1"], ["d5"]]
    assert len(latencies) == 2 and all(ms >= 0 for ms in latencies)
    # a warm-up search, then one per question, each for 3 chunks per ranked document
    assert index.calls == [("q1", 3, "dense"), ("q1", 3, "dense"), ("q2", 3, "dense")]


def test_load_questions_keeps_unicode_line_separators_inside_strings(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    # ensure_ascii=False writes U+2028 raw; str.splitlines() would cut the JSON line there
    path.write_text(
        json.dumps({"question": "first\u2028second?", "pmid": "9"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    assert load_questions(path) == [RetrievalQuestion("first\u2028second?", ("9",), 1)]
