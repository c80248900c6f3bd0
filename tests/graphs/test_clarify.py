"""Clarifying questions: triage finds a question too ambiguous, the assistant graph interrupts with
one clarifying question, and the user's reply resumes the run to a cited answer — in process,
through streaming and async, from a second process, and without a checkpointer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from medgraph.assistant import Assistant, ClarificationPendingError, EmptyQuestionError
from medgraph.graphs.assistant import (
    build_assistant_graph,
    clarification_reply,
    combine_clarification,
)
from medgraph.graphs.safety import triage_by_rules
from medgraph.knowledge.readers import read_file
from medgraph.knowledge.types import Document
from medgraph.settings import Settings
from tests.graphs.support import KeywordIndex, corpus_documents, dev_questions
from tests.scripted import Call, ScriptedChatModel
from tests.support import REPO_ROOT, shared_data_dir

MS_PMIDS = {"18049437", "24793469"}  # the shared corpus's two multiple sclerosis abstracts
AMBIGUOUS = "MS treatment?"
REPLY = "multiple sclerosis"


def ms_documents() -> list[Document]:
    """The first 20 shared abstracts plus the two about multiple sclerosis."""
    everything = read_file(shared_data_dir() / "pubmedqa" / "corpus.jsonl")
    chosen = [d for d in everything if d.source_id in MS_PMIDS]
    assert {d.source_id for d in chosen} == MS_PMIDS
    return [*corpus_documents(20), *chosen]


DOCS = ms_documents()


@pytest.fixture
def index() -> KeywordIndex:
    return KeywordIndex(DOCS)


def extractive_settings(tmp_path: Path, **graph: Any) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.models = settings.models.model_copy(update={"engine": "extractive"})
    settings.graph = settings.graph.model_copy(update=graph)
    return settings


def assert_cited_ms_answer(answer: Any, index: KeywordIndex) -> None:
    assert answer.kind == "answer"
    assert answer.question == combine_clarification(AMBIGUOUS, REPLY)
    assert answer.citations
    cited = {c.source_id for c in answer.citations}
    assert cited <= index.source_ids()
    assert cited & MS_PMIDS
    for citation in answer.citations:
        assert f"[{citation.n}]" in answer.text


def test_interrupt_then_resume_in_process(tmp_path: Path, index: KeywordIndex) -> None:
    with Assistant(extractive_settings(tmp_path), index=index) as assistant:
        asked = assistant.ask(AMBIGUOUS)
        assert asked.kind == "clarify"
        assert "multiple sclerosis" in asked.text and "mitral stenosis" in asked.text
        assert asked.text.count("?") == 1 and asked.thread_id
        assert asked.route == ["triage", "clarify"]
        assert asked.question == AMBIGUOUS and not asked.citations
        assert index.queries == []  # nothing ran past the interrupt
        thread = asked.thread_id
        assert assistant.pending_clarification(thread) == asked

        answer = assistant.ask(REPLY, thread_id=thread, create=False)
        assert answer.thread_id == thread
        assert answer.route == ["triage", "clarify", "retrieve", "write", "verify", "finalize"]
        assert_cited_ms_answer(answer, index)
        assert index.queries[0] == combine_clarification(AMBIGUOUS, REPLY)
        assert assistant.pending_clarification(thread) is None
        state = assistant.graph.get_state({"configurable": {"thread_id": thread}}).values
    turns = [(m.type, m.text) for m in state["messages"]]
    assert turns[:3] == [("human", AMBIGUOUS), ("ai", asked.text), ("human", REPLY)]
    assert turns[3][0] == "ai" and len(turns) == 4
    json.dumps(asked.to_json_dict())
    assert asked.to_json_dict()["kind"] == "clarify"


def test_follow_up_after_clarified_turn_is_an_ordinary_turn(
    tmp_path: Path, index: KeywordIndex
) -> None:
    with Assistant(extractive_settings(tmp_path), index=index) as assistant:
        thread = assistant.ask(AMBIGUOUS).thread_id
        assistant.ask(REPLY, thread_id=thread)
        follow_up = assistant.ask("What about the dose?", thread_id=thread)
    assert follow_up.kind in {"answer", "no_evidence"}
    assert "clarify" not in follow_up.route


def test_reasoner_sees_the_combined_question_and_no_model_runs_before_the_interrupt(
    tmp_path: Path, index: KeywordIndex
) -> None:
    def handler(call: Call) -> AIMessage | dict[str, Any]:
        if call.schema and "sentences" in call.schema.get("properties", {}):
            numbers = call.schema["properties"]["sentences"]["items"]["properties"]["citations"]
            first = numbers["items"].get("enum", [1])[0]
            return {
                "sentences": [
                    {"text": "Multiple sclerosis is a demyelinating disease.", "citations": [first]}
                ]
            }
        if call.schema:
            return {"supported": True, "relevant": True}
        return AIMessage("Enough evidence.")

    model = ScriptedChatModel(handler)
    settings = extractive_settings(tmp_path)
    settings.models = settings.models.model_copy(update={"engine": "transformers"})
    with Assistant(settings, text_model=model, image_model=model, index=index) as assistant:
        asked = assistant.ask(AMBIGUOUS)
        assert asked.kind == "clarify" and model.calls == []
        answer = assistant.ask(REPLY, thread_id=asked.thread_id)
    reason_calls = [c for c in model.calls if c.tools]
    assert reason_calls, "the reasoner ran after the resume"
    humans = [m.text for m in reason_calls[0].messages if isinstance(m, HumanMessage)]
    assert humans == [combine_clarification(AMBIGUOUS, REPLY)]
    assert answer.kind == "answer" and answer.citations
    assert {c.source_id for c in answer.citations} <= index.source_ids()


def test_stream_and_async_end_with_the_clarifying_question(
    tmp_path: Path, index: KeywordIndex
) -> None:
    with Assistant(extractive_settings(tmp_path), index=index) as assistant:
        events = list(assistant.stream(AMBIGUOUS))
        mode, asked = events[-1]
        assert mode == "answer" and asked.kind == "clarify" and asked.thread_id
        updates = [data for mode, data in events if mode == "updates"]
        assert any("__interrupt__" in update for update in updates)
        resumed = list(assistant.stream(REPLY, thread_id=asked.thread_id))
        assert resumed[-1][0] == "answer"
        assert_cited_ms_answer(resumed[-1][1], index)
        nodes = [next(iter(data)) for mode, data in resumed if mode == "updates"]
        assert nodes[0] == "clarify" and nodes[-1] == "finalize"

        async def conversation() -> tuple[Any, Any, list[tuple[str, Any]]]:
            first = await assistant.aask("is it safe?")
            second = await assistant.aask(REPLY + " treatment", thread_id=first.thread_id)
            streamed = [item async for item in assistant.astream("what about the dose?")]
            return first, second, streamed

        first, second, streamed = asyncio.run(conversation())
    assert first.kind == "clarify" and "medicine" in first.text
    assert second.kind == "answer" and second.question.startswith("is it safe?")
    assert streamed[-1][0] == "answer" and streamed[-1][1].kind == "clarify"


def test_bad_replies_keep_the_question_pending(tmp_path: Path, index: KeywordIndex) -> None:
    image = shared_data_dir() / "images" / "nih-cxr14" / "00000001_000.png"
    with Assistant(extractive_settings(tmp_path), index=index) as assistant:
        thread = assistant.ask(AMBIGUOUS).thread_id
        assert thread
        with pytest.raises(EmptyQuestionError):
            assistant.ask("  ", thread_id=thread)
        with pytest.raises(ClarificationPendingError, match="waiting for a text reply"):
            assistant.ask(REPLY, images=[image], thread_id=thread)
        assert assistant.pending_clarification(thread) is not None
        assert_cited_ms_answer(assistant.ask(REPLY, thread_id=thread), index)


def test_reply_that_is_an_emergency_gets_the_emergency_answer(
    tmp_path: Path, index: KeywordIndex
) -> None:
    with Assistant(extractive_settings(tmp_path), index=index) as assistant:
        thread = assistant.ask(AMBIGUOUS).thread_id
        answer = assistant.ask("my father just collapsed and is not breathing", thread_id=thread)
    assert answer.kind == "emergency"
    assert answer.route == ["triage", "clarify", "emergency"]
    assert index.queries == []


def test_clarification_disabled_searches_instead(tmp_path: Path, index: KeywordIndex) -> None:
    settings = extractive_settings(tmp_path, clarify_ambiguous=False)
    with Assistant(settings, index=index) as assistant:
        answer = assistant.ask(AMBIGUOUS)
    assert answer.kind != "clarify" and "clarify" not in answer.route
    assert answer.route[:2] == ["triage", "retrieve"] and index.queries[0] == AMBIGUOUS
    # the extractive writer reads the rest of the on-topic records with the same question
    assert set(index.queries) == {AMBIGUOUS}


def test_graph_without_checkpointer_answers_with_the_question(index: KeywordIndex) -> None:
    """The LangGraph-server export has no checkpointer of its own; invoked bare it returns the
    clarifying question as the answer, and the conversation sent back with the reply resolves."""
    settings = Settings.preset("offline")
    graph = build_assistant_graph(settings, index=index)
    first = graph.invoke({"messages": [HumanMessage(AMBIGUOUS)]})
    assert "__interrupt__" not in first
    assert first["answer"].kind == "clarify" and first["answer"].route == ["triage", "clarify"]
    asked = first["answer"].text
    conversation = [HumanMessage(AMBIGUOUS), AIMessage(asked), HumanMessage(REPLY)]
    assert clarification_reply(conversation) == (AMBIGUOUS, REPLY)
    second = graph.invoke({"messages": conversation})
    assert_cited_ms_answer(second["answer"], index)
    assert second["answer"].route[:2] == ["triage", "retrieve"]
    # An ordinary answer before a follow-up is not mistaken for a clarifying question.
    unrelated = [HumanMessage(AMBIGUOUS), AIMessage("Something else."), HumanMessage(REPLY)]
    assert clarification_reply(unrelated) is None


RUN_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from medgraph.assistant import Assistant
from medgraph.settings import Settings
from tests.graphs.test_clarify import DOCS
from tests.graphs.support import KeywordIndex
settings = Settings(home=Path({home!r}))
settings.models = settings.models.model_copy(update={{"engine": "extractive"}})
with Assistant(settings, index=KeywordIndex(DOCS)) as assistant:
    thread = sys.argv[2] if len(sys.argv) > 2 else None
    answer = assistant.ask(sys.argv[1], thread_id=thread, create=thread is None)
    print(json.dumps(answer.to_json_dict()))
"""


def test_interrupt_in_one_process_resume_in_another(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(RUN_SCRIPT.format(repo=str(REPO_ROOT), home=str(tmp_path / "home")))

    def run(*args: str) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return data

    asked = run(AMBIGUOUS)
    assert asked["kind"] == "clarify" and "multiple sclerosis" in asked["answer"]
    answered = run(REPLY, asked["thread_id"])
    assert answered["kind"] == "answer" and answered["thread_id"] == asked["thread_id"]
    cited = {c["source_id"] for c in answered["citations"]}
    assert cited & MS_PMIDS and cited <= {d.source_id for d in DOCS}
    assert answered["route"][:3] == ["triage", "clarify", "retrieve"]


def test_no_dev_question_is_ambiguous() -> None:
    """False-positive rate of the clarification rules on the 500 PubMedQA dev questions."""
    questions = [item["question"] for item in dev_questions(limit=10_000)]
    assert len(questions) == 500
    flagged = [q for q in questions if triage_by_rules(q, has_images=False).ambiguous]
    print(f"\n[clarify] {len(flagged)} of {len(questions)} dev questions flagged ambiguous")
    assert flagged == []
    # Nor as follow-ups in a thread whose earlier question gives the subject.
    history = [questions[0]]
    as_follow_ups = [
        q for q in questions[1:] if triage_by_rules(q, has_images=False, history=history).ambiguous
    ]
    assert as_follow_ups == []


@pytest.mark.parametrize(
    ("follow_up", "history"),
    [
        ("What about the dose?", ["Is metformin safe in pregnancy?"]),
        ("is it safe?", ["Does ibuprofen relieve migraine?"]),
        (AMBIGUOUS, ["Is multiple sclerosis linked to streptococcal infection?"]),
        ("Does it cause cancer?", ["Is hormone replacement therapy associated with stroke?"]),
    ],
)
def test_follow_ups_with_a_subject_in_the_thread_never_interrupt(
    tmp_path: Path, index: KeywordIndex, follow_up: str, history: list[str]
) -> None:
    with Assistant(extractive_settings(tmp_path), index=index) as assistant:
        first = assistant.ask(history[0])
        assert first.kind != "clarify"
        answer = assistant.ask(follow_up, thread_id=first.thread_id)
    assert answer.kind != "clarify" and "clarify" not in answer.route


def test_dev_questions_run_through_the_graph_never_interrupt(
    tmp_path: Path, index: KeywordIndex
) -> None:
    with Assistant(extractive_settings(tmp_path), index=index) as assistant:
        for item in dev_questions(15):
            answer = assistant.ask(item["question"])
            assert answer.kind != "clarify", item["question"]
            assert assistant.pending_clarification(answer.thread_id or "") is None
