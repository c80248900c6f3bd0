"""Plan approval in the research graph: accept, edit, cancel, bad resume values, unknown threads,
the raw LangGraph interrupt/Command API, and resuming in a second process from the SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from medgraph.assistant import Assistant
from medgraph.graphs.research import (
    EmptyPlanError,
    InvalidPlanDecisionError,
    build_research_graph,
    parse_decision,
    rule_plan,
)
from medgraph.research import (
    NotAwaitingApprovalError,
    UnknownResearchThreadError,
    load_research,
    resume_research,
)
from medgraph.settings import Settings
from tests.graphs.support import KeywordIndex, corpus_documents, dev_questions
from tests.graphs.test_research_graph import PLAN, Scripted, settings_for
from tests.support import REPO_ROOT

DOCS = corpus_documents(60)
TOPIC = "Screening uptake and inherited cardiovascular risk"
EDITED = dev_questions(4)[3]["question"]


def open_assistant(tmp_path: Path, script: Scripted, index: KeywordIndex) -> Assistant:
    return Assistant(
        settings_for(tmp_path), text_model=script.model, image_model=script.model, index=index
    )


def write_calls(script: Scripted) -> int:
    return sum("sentences" in (c.schema or {}).get("properties", {}) for c in script.model.calls)


def test_approval_waits_with_the_plan_then_accept_runs_it(tmp_path: Path) -> None:
    script, index = Scripted(), KeywordIndex(DOCS)
    with open_assistant(tmp_path, script, index) as assistant:
        waiting = assistant.research(TOPIC, approve_plan=True)
        assert waiting.status == "awaiting_approval" and waiting.thread_id
        assert [s.question for s in waiting.plan] == [p["question"] for p in PLAN]
        assert index.queries == [] and write_calls(script) == 0  # nothing researched yet
        assert load_research(assistant, waiting.thread_id).status == "awaiting_approval"

        done = resume_research(assistant, waiting.thread_id, "accept")
    assert done.status == "done" and done.thread_id == waiting.thread_id
    assert [s.question for s in done.sections] == [p["question"] for p in PLAN]
    assert write_calls(script) == 2 and done.bibliography
    # the plan was made once: resuming does not plan again
    plans = [
        c for c in script.model.calls if "subquestions" in (c.schema or {}).get("properties", {})
    ]
    assert len(plans) == 1


def test_edited_plan_replaces_the_planned_sub_questions(tmp_path: Path) -> None:
    script, index = Scripted(), KeywordIndex(DOCS)
    with open_assistant(tmp_path, script, index) as assistant:
        waiting = assistant.research(TOPIC, approve_plan=True)
        done = resume_research(assistant, waiting.thread_id, [EDITED])
    assert [s.question for s in done.plan] == [EDITED]
    assert [s.question for s in done.sections] == [EDITED]
    assert index.queries == [EDITED]
    assert done.sections[0].status == "answered"


def test_cancel_ends_without_research(tmp_path: Path) -> None:
    script, index = Scripted(), KeywordIndex(DOCS)
    with open_assistant(tmp_path, script, index) as assistant:
        waiting = assistant.research(TOPIC, approve_plan=True)
        cancelled = resume_research(assistant, waiting.thread_id, "cancel")
        assert load_research(assistant, waiting.thread_id).status == "cancelled"
        with pytest.raises(NotAwaitingApprovalError, match="not waiting"):
            resume_research(assistant, waiting.thread_id, "accept")
    assert cancelled.status == "cancelled" and cancelled.sections == []
    assert "cancelled" in cancelled.markdown and index.queries == []


def test_empty_edited_plan_is_refused_and_the_run_keeps_waiting(tmp_path: Path) -> None:
    script, index = Scripted(), KeywordIndex(DOCS)
    with open_assistant(tmp_path, script, index) as assistant:
        waiting = assistant.research(TOPIC, approve_plan=True)
        with pytest.raises(EmptyPlanError, match="no sub-questions"):
            resume_research(assistant, waiting.thread_id, [])
        with pytest.raises(EmptyPlanError):
            resume_research(assistant, waiting.thread_id, ["  ", ""])
        with pytest.raises(InvalidPlanDecisionError, match="accept"):
            resume_research(assistant, waiting.thread_id, "maybe")
        assert index.queries == []
        done = resume_research(assistant, waiting.thread_id, "a")
    assert done.status == "done"


def test_unknown_thread_is_a_clear_error(tmp_path: Path) -> None:
    script, index = Scripted(), KeywordIndex(DOCS)
    with open_assistant(tmp_path, script, index) as assistant:
        with pytest.raises(UnknownResearchThreadError, match="no research run with thread id"):
            resume_research(assistant, "no-such-thread", "accept")
        answer = assistant.ask(dev_questions(1)[0]["question"])  # a chat thread is not research
        assert answer.thread_id is not None
        with pytest.raises(UnknownResearchThreadError):
            resume_research(assistant, answer.thread_id, "accept")


def test_parse_decision_forms() -> None:
    assert parse_decision(None).action == "accept"
    assert parse_decision(True).action == "accept"
    assert parse_decision("").action == "accept"
    assert parse_decision({"action": "cancel"}).action == "cancel"
    edited = parse_decision({"action": "edit", "plan": [{"question": "Q1?", "why": "W"}, "Q2?"]})
    assert edited.action == "edit"
    assert [(s.question, s.why) for s in edited.plan] == [("Q1?", "W"), ("Q2?", "")]
    with pytest.raises(EmptyPlanError):
        parse_decision({"action": "edit", "plan": []})


def test_raw_graph_interrupt_and_command_resume() -> None:
    graph = build_research_graph(
        Settings.preset("offline"), index=KeywordIndex(DOCS), checkpointer=InMemorySaver()
    )
    config: Any = {"configurable": {"thread_id": "t1"}}
    topic = "Mammography screening in HMO women"
    first = graph.invoke({"topic": topic, "approve_plan": True}, config)
    (pending,) = first["__interrupt__"]
    assert [item["question"] for item in pending.value["plan"]] == [
        s.question for s in rule_plan(topic)
    ]
    assert "report" not in first
    result = graph.invoke(
        Command(resume=["Can tailored interventions increase mammography use?"]), config
    )
    report = result["report"]
    assert report.status == "done"
    assert [s.question for s in report.sections] == [
        "Can tailored interventions increase mammography use?"
    ]


RESUME_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from medgraph.assistant import Assistant
    from medgraph.research import resume_research
    from medgraph.settings import Settings
    from tests.graphs.support import KeywordIndex, corpus_documents

    checkpoint, thread = Path(sys.argv[1]), sys.argv[2]
    settings = Settings.preset("offline", home=checkpoint.parent)
    index = KeywordIndex(corpus_documents(60))
    with Assistant(settings, index=index, checkpoint_path=checkpoint) as assistant:
        report = resume_research(assistant, thread, "accept")
    print(json.dumps(report.to_json_dict()))
    """
)


def test_resume_from_a_second_process(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoints.sqlite"
    index = KeywordIndex(DOCS)
    settings = Settings.preset("offline", home=tmp_path)
    topic = "Tailored interventions and mammography use among HMO women"
    with Assistant(settings, index=index, checkpoint_path=checkpoint) as assistant:
        waiting = assistant.research(topic, approve_plan=True)
    assert waiting.status == "awaiting_approval" and index.queries == []

    result = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, str(checkpoint), str(waiting.thread_id)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == "done" and report["thread_id"] == waiting.thread_id
    assert [s["question"] for s in report["plan"]] == [s.question for s in waiting.plan]
    assert report["engine"] == "extractive" and report["bibliography"]
    assert {e["source_id"] for e in report["bibliography"]} <= index.source_ids()
    # and the finished run is visible from this process again
    with Assistant(settings, index=index, checkpoint_path=checkpoint) as assistant:
        again = load_research(assistant, str(waiting.thread_id))
    assert again.status == "done" and again.markdown == report["markdown"]
