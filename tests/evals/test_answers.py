"""``medgraph eval answers``: the extractive engine on real questions over a real index, the
scores computed from each answer's citations, resuming, ROUGE-L, and clear input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgraph.evals.answers import read_open_questions, rouge_l, same_record, summarise
from medgraph.knowledge.citations import strip_markers
from tests.evals.support import one_error_line, read_jsonl, run_cli, write_lines

LIMIT = 3


def test_extractive_answers_are_scored_against_the_gold_record(
    eval_data: Path, minilm_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "answers.jsonl"
    args = [
        "eval", "answers", "--questions", str(eval_data / "dev.jsonl"), "--limit", str(LIMIT),
        "--model", "none", "--index", str(minilm_index), "--json", "--save", str(save),
    ]  # fmt: skip
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    report = json.loads(out)
    row = report["results"]["answers"]
    records = read_jsonl(save)
    assert report["task"] == "answers" and report["engine"] == "extractive"
    assert row["answers"] == len(records) == LIMIT
    # the table's numbers are those of the saved answers
    cited = [s for r in records for s in r["sentences"]]
    gold = [s for r in records for s in r["sentences"] if r["gold"] in s["sources"]]
    assert row["cited_sentences"] == len(cited) > 0
    assert row["gold_sentence_share"] == pytest.approx(len(gold) / len(cited))
    assert row["answers_citing_gold"] == pytest.approx(
        sum(any(r["gold"] in s["sources"] for s in r["sentences"]) for r in records) / LIMIT
    )
    assert 0.0 <= row["relevant_fraction"] <= 1.0 and 0.0 <= row["supported_fraction"] <= 1.0
    for record in records:
        question = next(
            q for q in read_open_questions(eval_data / "dev.jsonl") if q.id == record["id"]
        )
        assert record["rouge_l"] == pytest.approx(
            rouge_l(strip_markers(record["answer"].split("\n\n", 1)[1]), question.long_answer or "")
        )
    assert summarise(records)["answers"] == row

    # run again: every answer comes from the save file
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    again = json.loads(out)
    assert again["resumed"] == LIMIT and again["results"]["answers"] == row


def test_rouge_l_and_record_matching() -> None:
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l("a b c d", "a x c y") == pytest.approx(0.5)
    assert rouge_l("", "anything") == 0.0
    assert same_record("PMID:123", "123") and not same_record("1234", "123")


def test_a_question_file_without_questions_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps({"pmid": "1"})])
    code, _, err = run_cli(["eval", "answers", "--questions", str(path), "--model", "none"], capsys)
    assert code == 2
    assert "'question' must be a non-empty string" in one_error_line(err)
