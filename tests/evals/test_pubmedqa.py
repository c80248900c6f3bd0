"""``medgraph eval pubmedqa``: scripted decisions on a real index, resume, the extractive refusal,
and the tiny random-weight checkpoint through the CLI (mechanics and format, not accuracy)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from medgraph.evals.answering import evaluation_parts
from medgraph.evals.pubmedqa import evaluate_pubmedqa
from medgraph.evals.records import YES_NO_MAYBE, read_pubmedqa
from medgraph.knowledge.chunking import split_sentences
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import LiteratureIndex
from medgraph.settings import Settings
from tests.evals.support import one_error_line, read_jsonl, run_cli, write_lines
from tests.knowledge.index_support import HashEmbedder
from tests.scripted import Call, ScriptedChatModel

_EVIDENCE = re.compile(
    r'<untrusted_data source="PMID:(\d+)" n="(\d+)"[^>]*>\n(.*?)\n</untrusted_data ', re.S
)


@pytest.fixture(scope="module")
def hash_index(
    eval_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiteratureIndex]:
    """A real LiteratureIndex of the gold abstracts with the fast hashing embedder."""
    settings = KnowledgeSettings(index_dir=tmp_path_factory.mktemp("hash-index"))
    index = LiteratureIndex(settings, embedder=HashEmbedder())
    index.ingest([eval_data / "corpus.jsonl"], progress=False)
    yield index
    index.close()


def decide_yes_citing_first_passage(call: Call) -> dict[str, object] | str:
    """With evidence: a reason quoting the first sentence of passage 1, answer yes. Else no."""
    assert call.schema is not None
    system = call.messages[0].text
    if "reasons" in call.schema["properties"]:
        _, number, text = _EVIDENCE.findall(system)[0]
        start, end = split_sentences(text)[0]
        return {"reasons": [{"text": text[start:end], "citations": [int(number)]}], "answer": "yes"}
    return {"reasoning": "From general knowledge.", "answer": "no"}


def _parts(model: ScriptedChatModel, index: LiteratureIndex, retrieval: bool = True):  # type: ignore[no-untyped-def]
    return evaluation_parts(
        Settings(), retrieval=retrieval, task="decide", text_model=model, index=index
    )


def test_both_conditions_cite_ingested_passages_and_are_verified(
    eval_data: Path, hash_index: LiteratureIndex, tmp_path: Path
) -> None:
    questions = read_pubmedqa(eval_data / "dev.jsonl")[:4]
    model = ScriptedChatModel(decide_yes_citing_first_passage)
    save = tmp_path / "pubmedqa.jsonl"
    report = evaluate_pubmedqa(
        _parts(model, hash_index), questions, ("retrieval", "closed_book"), save=save,
        progress=False,
    )  # fmt: skip
    assert len(model.calls) == 2 * len(questions)
    retrieval_call, closed_call = model.calls[0], model.calls[1]
    assert retrieval_call.schema is not None
    assert retrieval_call.schema["properties"]["answer"]["enum"] == list(YES_NO_MAYBE)
    shown = [int(n) for _, n, _ in _EVIDENCE.findall(retrieval_call.messages[0].text)]
    assert (
        shown
        and retrieval_call.schema["properties"]["reasons"]["items"]["properties"]["citations"][
            "items"
        ]["enum"]
        == shown
    )
    assert "<untrusted_data" not in closed_call.messages[0].text
    assert closed_call.messages[-1].text == questions[0].question

    records = read_jsonl(save)
    assert [r["id"] for r in records] == [q.id for q in questions]
    ingested = {json.loads(line)["pmid"] for line in (eval_data / "corpus.jsonl").open()}
    for record, question in zip(records, questions, strict=True):
        assert record["gold"] == question.gold and record["prediction"] == "yes"
        assert record["results"]["closed_book"]["prediction"] == "no"
        assert record["citations"] and record["citations"][0]["n"] == 1
        assert {c["source_id"] for c in record["citations"]} <= ingested
        assert record["answer"].endswith("[1].") or "[1]" in record["answer"]
        assert record["citations"][0]["quote"] in record["citations"][0]["passage"]
        assert record["verification"]["supported_fraction"] == 1.0
    golds = [q.gold for q in questions]
    with_retrieval = report.rows["with retrieval"]
    assert with_retrieval["accuracy"] == golds.count("yes") / len(golds)
    assert report.rows["without retrieval"]["accuracy"] == golds.count("no") / len(golds)
    assert with_retrieval["supported"] == 1.0 and with_retrieval["invalid"] == 0
    # each question's gold abstract is in this small index; hybrid search finds most of them
    retrieved = [r["results"]["retrieval"]["gold_retrieved"] for r in records]
    assert with_retrieval["gold_retrieved"] == sum(retrieved) / len(retrieved) >= 0.5


def test_resume_runs_only_what_the_save_file_lacks(
    eval_data: Path, hash_index: LiteratureIndex, tmp_path: Path
) -> None:
    questions = read_pubmedqa(eval_data / "dev.jsonl")[:4]
    save = tmp_path / "save.jsonl"
    first = ScriptedChatModel(decide_yes_citing_first_passage)
    evaluate_pubmedqa(
        _parts(first, hash_index, retrieval=False), questions[:3], ("closed_book",), save=save,
        progress=False,
    )  # fmt: skip
    assert len(first.calls) == 3
    # simulate a crash while writing the third record
    lines = save.read_text().splitlines()
    save.write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])

    second = ScriptedChatModel(decide_yes_citing_first_passage)
    report = evaluate_pubmedqa(
        _parts(second, hash_index), questions, ("retrieval", "closed_book"), save=save,
        progress=False,
    )  # fmt: skip
    # questions 1-2 keep their closed-book answers and only gain retrieval; 3-4 need both
    retrieval_calls = [c for c in second.calls if "reasons" in (c.schema or {})["properties"]]
    assert len(retrieval_calls) == 4 and len(second.calls) == 4 + 2
    assert report.resumed == 0 and report.rows["without retrieval"]["n"] == 4
    final = {r["id"]: r for r in read_jsonl(save)}  # later records supersede earlier ones
    assert set(final) == {q.id for q in questions}
    assert all(set(r["results"]) == {"retrieval", "closed_book"} for r in final.values())

    third = ScriptedChatModel(decide_yes_citing_first_passage)
    again = evaluate_pubmedqa(
        _parts(third, hash_index), questions, ("retrieval", "closed_book"), save=save,
        progress=False,
    )  # fmt: skip
    assert third.calls == [] and again.resumed == 4
    assert again.rows == report.rows


def test_unreadable_replies_are_invalid_not_guessed(
    eval_data: Path, hash_index: LiteratureIndex
) -> None:
    questions = read_pubmedqa(eval_data / "dev.jsonl")[:2]
    model = ScriptedChatModel(lambda call: "I think the answer is yes")
    report = evaluate_pubmedqa(
        _parts(model, hash_index), questions, ("retrieval", "closed_book"), progress=False
    )
    for row in report.rows.values():
        assert row["invalid"] == 2 and row["accuracy"] == 0.0


def test_extractive_engine_refuses_with_one_line(
    eval_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        ["eval", "pubmedqa", "--questions", str(eval_data / "dev.jsonl"), "--model", "none",
         "--limit", "2"],
        capsys,
    )  # fmt: skip
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "extractive engine" in line and "yes/no/maybe" in line and "--model" in line


def test_malformed_questions_file_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(
        tmp_path / "q.jsonl",
        [
            '{"pmid": "1", "question": "Q?", "final_decision": "yes"}',
            '{"pmid": "2", "question": "Q?"',
        ],
    )
    code, _, err = run_cli(
        ["eval", "pubmedqa", "--questions", str(path), "--model", "none"], capsys
    )
    assert code == 2 and f"{path} line 2: not valid JSON" in one_error_line(err)


def test_tiny_checkpoint_through_the_cli_and_resume(
    eval_data: Path,
    minilm_index: Path,
    tiny_text: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    save = tmp_path / "tiny.jsonl"
    args = [
        "eval", "pubmedqa", "--questions", str(eval_data / "dev.jsonl"), "--limit", "2",
        "--model", tiny_text, "--index", str(minilm_index), "--max-tokens", "96",
        "--save", str(save),
    ]  # fmt: skip
    code, out, err = run_cli([*args, "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["engine"] == f"transformers:{tiny_text}" and summary["resumed"] == 0
    assert set(summary["results"]) == {"with retrieval", "without retrieval"}
    records = read_jsonl(save)
    assert len(records) == 2
    for record in records:
        for result in record["results"].values():
            # the grammar admits only the enum: random weights still give a valid label
            assert result["prediction"] in YES_NO_MAYBE, result
        retrieval = record["results"]["retrieval"]
        assert (
            retrieval["evidence"] and 0.0 <= retrieval["verification"]["supported_fraction"] <= 1.0
        )
        cited = {c["n"] for c in record["citations"]}
        assert all(f"[{n}]" in record["answer"] for n in cited)
    for row in summary["results"].values():
        assert row["n"] == 2 and row["invalid"] == 0 and 0.0 <= row["macro_f1"] <= 1.0

    code, out, err = run_cli(args, capsys)  # resumed: nothing left to run, the table only
    assert code == 0, err
    assert len(read_jsonl(save)) == 2
    assert "with retrieval" in out and "without retrieval" in out and "2 resumed" in out
