"""Single assistant nodes called directly with a hand-built AssistantContext (no graph run)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.runtime import Runtime

from medgraph.graphs.assistant import (
    AssistantContext,
    call_tools,
    finalize,
    retrieve,
    route_after_gather,
    route_after_reason,
    route_after_triage,
    triage,
    verify,
    write,
)
from medgraph.graphs.config import GraphSettings
from medgraph.graphs.state import AssistantState, BestDraft, merge_evidence
from medgraph.knowledge.citations import DraftSentence
from medgraph.tools.registry import ToolNameConflictError, default_tools, with_user_tools
from tests.graphs.support import KeywordIndex, corpus_documents, dev_questions
from tests.scripted import ScriptedChatModel

DOCS = corpus_documents(60)
QUESTION = dev_questions(1)[0]["question"]


def runtime_for(**fields: Any) -> Runtime[AssistantContext]:
    return Runtime(context=AssistantContext(**fields))


def test_triage_routes_an_emergency_without_touching_the_index() -> None:
    index = KeywordIndex(DOCS)
    runtime = runtime_for(index=index)
    update = triage({"messages": [HumanMessage("I have crushing chest pain right now")]}, runtime)
    assert update["emergency"] is True
    assert route_after_triage(update) == "emergency"
    assert index.queries == []


def test_triage_sends_a_literature_question_to_retrieval_only_with_an_index() -> None:
    state: AssistantState = {"messages": [HumanMessage(QUESTION)], "images": []}
    with_index = triage(state, runtime_for(index=KeywordIndex(DOCS)))
    without = triage(state, runtime_for())
    assert with_index["needs_literature"] and not without["needs_literature"]
    assert route_after_triage(with_index) == ["retrieve"]
    assert route_after_triage(without) == "gather"


def test_retrieve_reads_k_from_the_context_settings() -> None:
    index = KeywordIndex(DOCS)
    runtime = runtime_for(index=index, settings=GraphSettings(retrieve_k=2))
    update = retrieve({"question": QUESTION, "query": QUESTION}, runtime)
    assert len(update["evidence"]) == 2 and index.queries == [QUESTION]
    assert update["route"] == ["retrieve"]


def test_extractive_write_and_verify_keep_only_cited_sentences_from_evidence() -> None:
    index = KeywordIndex(DOCS)
    runtime = runtime_for(index=index, settings=GraphSettings(read_whole_records=False))
    evidence = merge_evidence([], index.search(QUESTION, k=4))
    state: AssistantState = {"question": QUESTION, "evidence": evidence, "messages": []}
    drafted = write(state, runtime)
    assert drafted["draft"], "the extractive writer quotes the evidence"
    numbers = {e.number for e in evidence}
    assert all(set(s.citations) <= numbers for s in drafted["draft"])
    checked = verify({**state, "draft": drafted["draft"]}, runtime)
    best = checked["best"]
    assert isinstance(best, BestDraft) and best.sentences
    assert all(s.citations for s in best.sentences)


def test_routers_read_the_context() -> None:
    asked = AIMessage("", tool_calls=[{"name": "bmi", "args": {}, "id": "c1"}])
    state: AssistantState = {"messages": [asked], "tool_steps": 1}
    model = ScriptedChatModel(lambda call: AIMessage("unused"))
    assert route_after_gather(state, runtime_for()) == "write"
    assert route_after_gather(state, runtime_for(text_model=model)) == "reason"
    assert route_after_reason(state, runtime_for(text_model=model)) == "tools"
    no_steps = runtime_for(text_model=model, settings=GraphSettings(max_tool_steps=0))
    assert route_after_reason(state, no_steps) == "write"


@tool
def ward_formulary_dose(drug: str) -> str:
    """The dose of ``drug`` in this ward's formulary."""
    return f"{drug}: 500 mg twice daily"


def test_call_tools_runs_a_user_tool_from_the_context() -> None:
    tools = with_user_tools(default_tools(None), [ward_formulary_dose])
    runtime = runtime_for(tools=tools)
    asked = AIMessage(
        "",
        tool_calls=[{"name": "ward_formulary_dose", "args": {"drug": "metformin"}, "id": "t1"}],
    )
    update = call_tools({"messages": [HumanMessage(QUESTION), asked]}, runtime)
    (reply,) = update["messages"]
    assert isinstance(reply, ToolMessage) and reply.text == "metformin: 500 mg twice daily"
    assert update["evidence"] == []


def test_finalize_lists_tool_calls_and_keeps_a_computed_sentence() -> None:
    asked = AIMessage(
        "",
        tool_calls=[{"name": "ward_formulary_dose", "args": {"drug": "metformin"}, "id": "t1"}],
    )
    result = ToolMessage(
        "metformin: 500 mg twice daily", tool_call_id="t1", name="ward_formulary_dose"
    )
    messages = [HumanMessage("What is the ward dose of metformin?"), asked, result]
    draft = [DraftSentence(text="The ward formulary dose is 500 mg twice daily.", citations=[])]
    state: AssistantState = {"messages": messages, "question": "ward dose", "draft": draft}
    runtime = runtime_for()
    checked = verify(state, runtime)
    assert checked["best"].sentences == draft
    answer = finalize({**state, "best": checked["best"]}, runtime)["answer"]
    assert "500 mg twice daily" in answer.text
    (use,) = answer.tool_calls
    assert (use.name, use.args, use.result) == (
        "ward_formulary_dose",
        {"drug": "metformin"},
        "metformin: 500 mg twice daily",
    )


def test_a_user_tool_may_not_take_a_default_tools_name() -> None:
    @tool
    def bmi(weight: float) -> str:
        """Not the real BMI."""
        return "?"

    with pytest.raises(ToolNameConflictError, match="'bmi'"):
        with_user_tools(default_tools(None), [bmi])
