"""A compiled graph's bound default context: kept on the graph (never in its config, which a
LangGraph server copies into checkpoint metadata), a run's ``context=`` fields merged over it."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from medgraph.graphs.assistant import AssistantContext, build_assistant_graph
from medgraph.graphs.bound import RunContextError
from medgraph.graphs.research import build_research_graph
from medgraph.settings import Settings
from tests.graphs.support import KeywordIndex, corpus_documents

QUESTION = "Does tailored intervention increase mammography use among HMO women?"
ASK: Any = {"messages": [{"role": "user", "content": QUESTION}]}


@pytest.fixture(scope="module")
def index() -> KeywordIndex:
    return KeywordIndex(corpus_documents(30))


def test_empty_run_context_keeps_the_bound_one(index: KeywordIndex) -> None:
    graph = build_assistant_graph(Settings.preset("offline"), index=index)
    bare = graph.invoke(ASK)
    empty = graph.invoke(ASK, context={})
    assert bare["answer"].route == ["triage", "retrieve", "write", "verify", "finalize"]
    assert empty["answer"].route == bare["answer"].route
    assert empty["answer"].text == bare["answer"].text and empty["evidence"]


def test_run_context_fields_go_over_the_bound_ones(index: KeywordIndex) -> None:
    graph = build_assistant_graph(Settings.preset("offline"), index=index)
    narrow = graph.invoke(ASK, context={"settings": {"retrieve_k": 1, "read_whole_records": False}})
    assert len(narrow["evidence"]) == 1  # the bound index is still searched
    bound = graph.bound_context  # type: ignore[attr-defined]
    assert bound.settings.retrieve_k == 6 and bound.index is index  # the bound one is unchanged


def test_a_context_object_replaces_the_bound_one(index: KeywordIndex) -> None:
    graph = build_assistant_graph(Settings.preset("offline"), index=index)
    result = graph.invoke(ASK, context=AssistantContext())  # no index: nothing to retrieve
    assert result["answer"].route == ["triage", "write", "verify", "finalize"]


def test_bad_run_context_names_the_field(index: KeywordIndex) -> None:
    graph = build_assistant_graph(Settings.preset("offline"), index=index)
    with pytest.raises(RunContextError, match=r"'retrieve_k'.*use only .*settings"):
        graph.invoke(ASK, context={"retrieve_k": 2})
    with pytest.raises(RunContextError, match=r"field 'settings' is invalid.*retrieve_k"):
        graph.invoke(ASK, context={"settings": {"retrieve_k": 0}})


def test_bound_context_stays_out_of_config_and_survives_copies(index: KeywordIndex) -> None:
    research = build_research_graph(Settings.preset("offline"), index=index)
    # a LangGraph server copies every configurable value into checkpoint metadata
    assert not (research.config or {}).get("configurable")
    pickle.dumps(research.config)
    # a LangGraph server attaches its checkpointer with copy(); with_config() copies too
    served = research.copy(update={"checkpointer": InMemorySaver()}).with_config(
        {"configurable": {"thread_id": "t1"}}
    )
    result = served.invoke({"topic": "Mammography screening in HMO women"}, context={})
    assert result["report"].status == "done" and result["report"].bibliography
    assert {e.source_id for e in result["report"].bibliography} <= index.source_ids()
