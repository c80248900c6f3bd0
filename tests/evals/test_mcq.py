"""``medgraph eval mcq``: MedQA-style questions with and without retrieved passages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgraph.evals.answering import evaluation_parts
from medgraph.evals.mcq import evaluate_mcq
from medgraph.evals.records import read_mcq
from medgraph.settings import Settings
from tests.evals.support import medqa_lines, one_error_line, read_jsonl, run_cli, write_lines
from tests.graphs.support import KeywordIndex, corpus_documents
from tests.scripted import Call, ScriptedChatModel


def answer_b_with_passages_else_a(call: Call) -> dict[str, str]:
    """B when the prompt holds retrieved passages, A when it holds the question alone."""
    letter = "B" if "<untrusted_data" in call.messages[0].text else "A"
    return {"reasoning": "Brief.", "answer": letter}


def test_retrieval_and_closed_book_prompts_and_accuracy(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "medqa.jsonl", medqa_lines(6))
    questions = read_mcq(path)
    index = KeywordIndex(corpus_documents(40))
    model = ScriptedChatModel(answer_b_with_passages_else_a)
    parts = evaluation_parts(
        Settings(), retrieval=True, task="choose", text_model=model, index=index
    )
    save = tmp_path / "save.jsonl"
    report = evaluate_mcq(parts, questions, ("retrieval", "closed_book"), save=save, progress=False)

    assert index.queries == [q.question for q in questions]
    first = model.calls[0]
    assert first.schema is not None
    assert first.schema["properties"]["answer"]["enum"] == ["A", "B", "C", "D"]
    user = first.messages[-1].text
    for letter, text in questions[0].options.items():
        assert f"{letter}. {text}" in user
    golds = [q.gold for q in questions]
    assert report.rows["with retrieval"]["accuracy"] == golds.count("B") / len(golds)
    assert report.rows["without retrieval"]["accuracy"] == golds.count("A") / len(golds)
    records = read_jsonl(save)
    assert [r["gold"] for r in records] == golds
    assert all(r["results"]["retrieval"]["evidence"] for r in records)

    # resume: everything is saved, so nothing runs again
    again_model = ScriptedChatModel(answer_b_with_passages_else_a)
    again = evaluate_mcq(
        evaluation_parts(Settings(), retrieval=True, task="c", text_model=again_model, index=index),
        questions, ("retrieval", "closed_book"), save=save, progress=False,
    )  # fmt: skip
    assert again_model.calls == [] and again.resumed == len(questions)


def test_extractive_engine_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "medqa.jsonl", medqa_lines(2))
    code, _, err = run_cli(["eval", "mcq", "--questions", str(path), "--model", "none"], capsys)
    assert code == 2 and "cannot choose an option" in one_error_line(err)


def test_malformed_file_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = json.loads(medqa_lines(1)[0])
    del record["options"]
    path = write_lines(tmp_path / "medqa.jsonl", [medqa_lines(1)[0], json.dumps(record)])
    code, _, err = run_cli(["eval", "mcq", "--questions", str(path), "--model", "none"], capsys)
    assert code == 2 and f"{path} line 2: 'options'" in one_error_line(err)


def test_tiny_checkpoint_picks_real_option_letters(
    tiny_text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "medqa.jsonl", medqa_lines(2))
    save = tmp_path / "save.jsonl"
    code, out, err = run_cli(
        ["eval", "mcq", "--questions", str(path), "--model", tiny_text, "--no-retrieval",
         "--max-tokens", "48", "--json", "--save", str(save)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert list(summary["results"]) == ["without retrieval"]
    assert summary["results"]["without retrieval"]["invalid"] == 0
    records = read_jsonl(save)
    assert [set(r["results"]) for r in records] == [{"closed_book"}] * 2
    assert all(r["prediction"] in r["options"] for r in records)
    assert "MedQA" in err  # the progress bar went to standard error
