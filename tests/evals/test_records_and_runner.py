"""Question/answer file readers (line-numbered errors) and the resumable save file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgraph.evals.records import (
    AnswerFileError,
    QuestionFileError,
    read_answers,
    read_mcq,
    read_pubmedqa,
)
from medgraph.evals.runner import SaveFile, SaveFileError, run_items
from tests.evals.support import dev_lines, medqa_lines, write_lines


def test_pubmedqa_reader_on_the_shared_dev_file(tmp_path: Path) -> None:
    lines = dev_lines(5)
    questions = read_pubmedqa(write_lines(tmp_path / "dev.jsonl", lines))
    for line, question in zip(lines, questions, strict=True):
        record = json.loads(line)
        assert question.id == question.source_id == record["pmid"]
        assert question.gold == record["final_decision"]
        assert question.question == record["question"]


def test_mcq_reader_on_the_shared_sample(tmp_path: Path) -> None:
    lines = medqa_lines(4)
    questions = read_mcq(write_lines(tmp_path / "medqa.jsonl", lines))
    for line, question in zip(lines, questions, strict=True):
        record = json.loads(line)
        assert list(question.options) == ["A", "B", "C", "D"]
        assert question.gold == record["answer_idx"]
        assert question.options[question.gold] == record["answer"]
    assert len({q.id for q in questions}) == 4
    # ids come from the content, so they survive reordering the file
    reordered = read_mcq(write_lines(tmp_path / "reordered.jsonl", lines[::-1]))
    assert [q.id for q in reordered] == [q.id for q in questions][::-1]


@pytest.mark.parametrize(
    ("second_line", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"pmid": "9", "question": "Q?", "final_decision": "probably"}', "'final_decision'"),
        ('{"pmid": "9", "final_decision": "yes"}', "'question'"),
    ],
)
def test_malformed_pubmedqa_file_names_file_and_line(
    tmp_path: Path, second_line: str, needle: str
) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [dev_lines(1)[0], "", second_line])
    with pytest.raises(QuestionFileError) as error:
        read_pubmedqa(path)
    assert f"{path} line 3" in str(error.value) and needle in str(error.value)


def test_malformed_mcq_and_duplicate_ids(tmp_path: Path) -> None:
    record = json.loads(medqa_lines(1)[0])
    bad = write_lines(tmp_path / "bad.jsonl", [json.dumps({**record, "answer_idx": "E"})])
    with pytest.raises(QuestionFileError, match=r"bad.jsonl line 1: 'answer_idx'.*A, B, C, D"):
        read_mcq(bad)
    twice = write_lines(tmp_path / "twice.jsonl", [dev_lines(1)[0]] * 2)
    with pytest.raises(QuestionFileError, match=r"line 2: id .* repeats line 1"):
        read_pubmedqa(twice)
    with pytest.raises(QuestionFileError, match="does not exist"):
        read_mcq(tmp_path / "absent.jsonl")


def test_answers_reader_accepts_ask_json_and_names_bad_lines(tmp_path: Path) -> None:
    ask = {
        "answer": "A claim about statins [1].",
        "citations": [{"n": 1, "source_id": "1", "quote": "Statins lower LDL."}],
        "thread_id": "t-1",
    }
    saved = {**ask, "id": "p1", "citations": [{"n": 1, "quote": "q", "passage": "Full passage."}]}
    answers = read_answers(write_lines(tmp_path / "a.jsonl", [json.dumps(ask), json.dumps(saved)]))
    assert [a.id for a in answers] == ["t-1", "p1"]
    assert answers[0].passages == {1: "Statins lower LDL."}
    assert answers[1].passages == {1: "Full passage."}  # the full passage beats the quote
    # ask --json cites per record: every quoted passage of the record is judged, not only the first
    per_record = {
        **ask,
        "thread_id": "t-2",
        "citations": [
            {
                "n": 1,
                "quote": "Statins lower LDL.",
                "passages": [{"quote": "Statins lower LDL."}, {"quote": "Strokes fell by 20%."}],
            }
        ],
    }
    both = read_answers(write_lines(tmp_path / "r.jsonl", [json.dumps(per_record)]))
    assert both[0].passages == {1: "Statins lower LDL.\n\nStrokes fell by 20%."}
    bad = write_lines(
        tmp_path / "b.jsonl", [json.dumps(ask), json.dumps({"answer": "x", "citations": [{}]})]
    )
    with pytest.raises(AnswerFileError, match=r"b.jsonl line 2: citation 1 needs 'n'"):
        read_answers(bad)


def _work_counting(calls: list[str]):  # type: ignore[no-untyped-def]
    def work(item: str, previous: dict | None) -> dict:  # type: ignore[type-arg]
        calls.append(item)
        return {"task": "t", "engine": "e", "id": item, "value": item.upper()}

    return work


def test_resume_skips_saved_ids_and_redoes_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "run" / "save.jsonl"
    calls: list[str] = []
    first = run_items(
        ["a", "b"], _work_counting(calls), item_id=str, is_complete=lambda r: True,
        save=SaveFile(path, "t", "e"), progress=False,
    )  # fmt: skip
    assert calls == ["a", "b"] and first.evaluated == 2
    # a crash in the middle of writing the record of "c"
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"task": "t", "engine": "e", "id": "c", "val')
    calls.clear()
    again = run_items(
        ["a", "b", "c", "d"], _work_counting(calls), item_id=str, is_complete=lambda r: True,
        save=SaveFile(path, "t", "e"), progress=False,
    )  # fmt: skip
    assert calls == ["c", "d"]
    assert (again.resumed, again.evaluated) == (2, 2)
    assert [r["value"] for r in again.records] == ["A", "B", "C", "D"]
    saved = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in saved] == ["a", "b", "c", "d"]


def test_incomplete_records_are_redone_and_superseded(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "save.jsonl", [json.dumps({"task": "t", "engine": "e", "id": "a", "n": 1})]
    )
    seen: list[dict | None] = []  # type: ignore[type-arg]

    def work(item: str, previous: dict | None) -> dict:  # type: ignore[type-arg]
        seen.append(previous)
        return {"task": "t", "engine": "e", "id": item, "n": 2}

    result = run_items(
        ["a"], work, item_id=str, is_complete=lambda r: r["n"] == 2,
        save=SaveFile(path, "t", "e"), progress=False,
    )  # fmt: skip
    assert seen == [{"task": "t", "engine": "e", "id": "a", "n": 1}]
    assert SaveFile(path, "t", "e").load() == {"a": result.records[0]}


def test_save_file_refuses_other_tasks_engines_and_broken_lines(tmp_path: Path) -> None:
    record = {"task": "t", "engine": "e", "id": "a"}
    path = write_lines(tmp_path / "save.jsonl", [json.dumps(record)])
    with pytest.raises(SaveFileError, match="'t' record, not 'other'"):
        SaveFile(path, "other", "e").load()
    with pytest.raises(SaveFileError, match="engine 'e', this run uses 'x'"):
        SaveFile(path, "t", "x").load()
    broken = write_lines(tmp_path / "broken.jsonl", ["{oops", json.dumps(record)])
    with pytest.raises(SaveFileError, match=r"broken\.jsonl line 1 is not a JSON record"):
        SaveFile(broken, "t", "e").load()
