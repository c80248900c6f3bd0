"""bench/orchestration_overhead.py: both graphs make the same tool calls; the report's mechanics."""

from __future__ import annotations

import json
import re

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from medgraph.graphs.assistant import AssistantContext, compile_assistant_graph
from medgraph.tools.calculators import CALCULATOR_TOOLS
from medgraph.tools.literature import build_search_literature_tool
from tests.bench.support import load_bench
from tests.graphs.support import corpus_documents, dev_questions
from tests.scripted import ScriptedChatModel

overhead = load_bench("orchestration_overhead")
QUESTIONS = [q["question"] for q in dev_questions(3)]


def tool_calls(messages: list) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    return [
        (c["name"], c["args"]) for m in messages if isinstance(m, AIMessage) for c in m.tool_calls
    ]


def test_bare_loop_and_medgraph_make_the_same_tool_calls() -> None:
    index = overhead.PrecomputedIndex(corpus_documents(60), QUESTIONS)
    model = ScriptedChatModel(overhead.scripted_reply)
    context = AssistantContext(text_model=model, image_model=model, index=index, engine="scripted")
    medgraph = compile_assistant_graph(context)
    search = build_search_literature_tool(index, default_k=overhead.RETRIEVE_K)
    bmi = next(t for t in CALCULATOR_TOOLS if t.name == "bmi")
    bare = overhead.bare_loop(model, [search, bmi])
    for question in QUESTIONS:
        ours = medgraph.invoke({"messages": [HumanMessage(question)], "images": []})
        theirs = bare.invoke({"messages": [HumanMessage(question)]})
        expected = [("search_literature", {"query": question}), ("bmi", overhead.BMI_ARGS)]
        assert tool_calls(ours["messages"]) == tool_calls(theirs["messages"]) == expected
        results = [m for m in theirs["messages"] if isinstance(m, ToolMessage)]
        bmi_value = json.loads(str(results[1].content))["value"]
        assert bmi_value == pytest.approx(70 / 1.75**2, abs=0.01)  # the calculator really ran
        assert ours["answer"].citations and ours["answer"].verification.supported_fraction == 1.0
    assert index.misses == 0 and index.searches == 3 * len(QUESTIONS)  # retrieve + tool, tool


def test_precomputed_index_answers_known_queries_only() -> None:
    index = overhead.PrecomputedIndex(corpus_documents(60), QUESTIONS[:1], k=4)
    hits = index.search(QUESTIONS[0], k=2)
    assert len(hits) == 2 and hits[0].score >= hits[1].score > 0
    assert index.search("a query nobody precomputed") == [] and index.misses == 1


def test_report_prints_ratio_and_node_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    overhead.main(["--questions", "4", "--rounds", "1", "--docs", "60"])
    printed = capsys.readouterr().out
    rows = {}
    for label in ("bare LangGraph loop (baseline)", "medgraph assistant graph", "Assistant.ask"):
        match = re.search(re.escape(label) + r".*?\s([\d.]+)\s+([\d.]+)$", printed, re.M)
        assert match, f"no row for {label}"
        rows[label] = (float(match.group(1)), float(match.group(2)))
    baseline_ms, baseline_ratio = rows["bare LangGraph loop (baseline)"]
    assert baseline_ratio == 1.0
    for ms, ratio in rows.values():  # each ratio is its row's time over the baseline's
        assert ratio == pytest.approx(ms / baseline_ms, abs=0.01)
    nodes = re.findall(r"^(\w+)\s+(\d+\.\d)\s+[\d.]+\s+[\d.]+%", printed, re.M)
    calls = {name: float(count) for name, count in nodes}
    assert calls["reason"] == 3.0 and calls["tools"] == 2.0
    assert {"triage", "retrieve", "write", "verify", "finalize"} <= set(calls)
    assert "gather" not in calls  # without images, retrieval goes straight on to the reasoner
