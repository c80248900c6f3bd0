"""Orchestration overhead of the assistant graph, with zero-latency models and index.

Both graphs get the same scripted chat model (it answers at once) and the same in-memory index
(every query's hits are computed before timing; a search is a dict lookup), and the model makes
the same tool calls in both: ``search_literature`` with the question, then ``bmi``, then it
answers. What remains is the cost of the orchestration itself:

- baseline: a bare LangGraph loop (``MessagesState``; model node <-> ``ToolNode``);
- medgraph's assistant graph (``compile_assistant_graph``): triage, retrieval, the reasoner's tool
  loop, a structured cited write, verification by a (scripted) judge and finalisation;
- ``Assistant.ask``: the same graph with its SQLite checkpointer (one thread per question).

Prints ms per question for each and the ratio to the bare loop, then where the time goes in
medgraph's graph (per node, from a separate pass traced by a callback handler).

    python bench/orchestration_overhead.py [--questions 200] [--rounds 3]

Questions: the first N of ``$MEDGRAPH_DATA/pubmedqa/dev.jsonl`` (default ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_core.tools import BaseTool  # noqa: E402
from langgraph.graph import START, MessagesState, StateGraph  # noqa: E402
from langgraph.graph.state import CompiledStateGraph  # noqa: E402
from langgraph.prebuilt import ToolNode, tools_condition  # noqa: E402

from medgraph.assistant import Assistant  # noqa: E402
from medgraph.graphs.assistant import AssistantContext, compile_assistant_graph  # noqa: E402
from medgraph.knowledge.readers import read_file  # noqa: E402
from medgraph.knowledge.types import Document, Evidence  # noqa: E402
from medgraph.settings import Settings  # noqa: E402
from medgraph.tools.calculators import CALCULATOR_TOOLS  # noqa: E402
from medgraph.tools.literature import build_search_literature_tool  # noqa: E402
from tests.graphs.support import KeywordIndex, words  # noqa: E402
from tests.scripted import Call, ScriptedChatModel  # noqa: E402
from tests.support import shared_data_dir  # noqa: E402

RETRIEVE_K = 6
BMI_ARGS = {"weight_kg": 70.0, "height_cm": 175.0}
FINAL_TEXT = "The retrieved abstracts address this question."


class PrecomputedIndex:
    """A zero-latency EvidenceSearcher: hits for known queries are computed up front.

    ``search`` is a dictionary lookup; a query not seen before counts as a miss and finds nothing
    (the bench reports misses, which would mean the two graphs did not search alike).
    """

    def __init__(self, documents: Sequence[Document], queries: Sequence[str], k: int = 20) -> None:
        keyword = KeywordIndex(documents)
        chunk_words = [(words(chunk.text), chunk, doc) for chunk, doc in keyword.chunks]
        self._hits: dict[str, list[Evidence]] = {}
        for query in queries:
            wanted = words(query)
            scored = [(len(wanted & w), c, d) for w, c, d in chunk_words if wanted & w]
            scored.sort(key=lambda s: -s[0])
            self._hits[query] = [
                Evidence(chunk=c, document=d, score=float(s)) for s, c, d in scored[:k]
            ]
        self.searches = 0
        self.misses = 0

    def search(
        self, query: str, k: int = 10, mode: str = "hybrid", where: Mapping[str, Any] | None = None
    ) -> list[Evidence]:
        """The precomputed hits for ``query`` (first ``k``)."""
        self.searches += 1
        hits = self._hits.get(query)
        if hits is None:
            self.misses += 1
            return []
        return hits[:k]


def _question_of(call: Call) -> str:
    humans = [m for m in call.messages if isinstance(m, HumanMessage)]
    return str(humans[-1].text) if humans else ""


def _first_evidence_sentence(call: Call) -> str:
    """The first sentence of the first evidence block in the prompt (a grounded claim)."""
    text = "\n".join(str(m.text) for m in call.messages)
    start = text.find("<untrusted_data")
    end = text.find("</untrusted_data", start)
    if start == -1 or end == -1:
        return FINAL_TEXT
    body = text[text.index(">", start) + 1 : end].strip()
    return body.split(". ")[0].rstrip(".") + "."


def scripted_reply(call: Call) -> AIMessage | dict[str, Any]:
    """Search, then compute a BMI, then answer; write and judge calls get grounded replies."""
    schema = call.schema or {}
    properties = schema.get("properties", {})
    if "sentences" in properties:
        items = properties["sentences"]["items"]["properties"]["citations"]["items"]
        numbers = list(items.get("enum", []))[:1]
        return {"sentences": [{"text": _first_evidence_sentence(call), "citations": numbers}]}
    if "supported" in properties:  # the grounding judge: supported (and relevant, when asked)
        return {key: True for key in ("supported", "relevant") if key in properties}
    results = sum(isinstance(m, ToolMessage) for m in call.messages)
    if results == 0:
        query = _question_of(call)
        return AIMessage(
            "", tool_calls=[{"name": "search_literature", "args": {"query": query}, "id": "s1"}]
        )
    if results == 1:
        return AIMessage("", tool_calls=[{"name": "bmi", "args": BMI_ARGS, "id": "c1"}])
    return AIMessage(FINAL_TEXT)


def bare_loop(model: BaseChatModel, tools: Sequence[BaseTool]) -> CompiledStateGraph:
    """The baseline: a minimal tool-calling loop (model node <-> ToolNode)."""
    bound = model.bind_tools(list(tools))

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(list(tools)))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile()


@dataclass
class NodeTimes:
    """Per-node totals gathered by :class:`NodeTimer`."""

    node_ms: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    node_calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    model_ms: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    model_calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tool_ms: dict[str, float] = field(default_factory=lambda: defaultdict(float))


class NodeTimer(BaseCallbackHandler):
    """Times graph nodes, chat-model calls and tool calls by the node they ran in."""

    def __init__(self) -> None:
        self.times = NodeTimes()
        self._open: dict[UUID, tuple[str, str, float]] = {}

    def _start(self, kind: str, run_id: UUID, metadata: dict[str, Any] | None) -> None:
        node = (metadata or {}).get("langgraph_node")
        if node is not None:
            self._open[run_id] = (kind, str(node), time.perf_counter())

    def _end(self, run_id: UUID) -> None:
        opened = self._open.pop(run_id, None)
        if opened is None:
            return
        kind, node, started = opened
        elapsed = (time.perf_counter() - started) * 1000
        if kind == "node":
            self.times.node_ms[node] += elapsed
            self.times.node_calls[node] += 1
        elif kind == "model":
            self.times.model_ms[node] += elapsed
            self.times.model_calls[node] += 1
        else:
            self.times.tool_ms[node] += elapsed

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        """A node run is the chain run named after the node it belongs to."""
        node = (metadata or {}).get("langgraph_node")
        outer = not any(k == "node" and n == node for k, n, _ in self._open.values())
        if node is not None and name == node and outer:
            self._start("node", run_id, metadata)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a node run."""
        self._end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a failed node run."""
        self._end(run_id)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: Any,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a chat-model call."""
        self._start("model", run_id, metadata)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a chat-model call."""
        self._end(run_id)

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a tool call."""
        self._start("tool", run_id, metadata)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a tool call."""
        self._end(run_id)


def per_question_ms(run: Callable[[str], Any], questions: Sequence[str]) -> float:
    """Mean wall milliseconds of ``run`` over ``questions``."""
    started = time.perf_counter()
    for question in questions:
        run(question)
    return (time.perf_counter() - started) * 1000 / len(questions)


def load_questions(limit: int) -> list[str]:
    """The first ``limit`` PubMedQA dev questions."""
    lines = (shared_data_dir() / "pubmedqa" / "dev.jsonl").read_text(encoding="utf-8").split("\n")
    return [json.loads(line)["question"] for line in lines if line.strip()][:limit]


def main(argv: list[str] | None = None) -> None:
    """Measure both graphs, print the ratio table and medgraph's per-node breakdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="timed passes; the median is shown")
    parser.add_argument("--docs", type=int, default=1000, help="corpus abstracts in the index")
    args = parser.parse_args(argv)

    documents = read_file(shared_data_dir() / "pubmedqa" / "corpus.jsonl")[: args.docs]
    candidates = load_questions(args.questions)
    index = PrecomputedIndex(documents, candidates)
    model = ScriptedChatModel(scripted_reply)
    context = AssistantContext(text_model=model, image_model=model, index=index, engine="scripted")
    context.settings = context.settings.model_copy(update={"retrieve_k": RETRIEVE_K})
    medgraph_graph = compile_assistant_graph(context)
    search_tool = build_search_literature_tool(index, default_k=RETRIEVE_K)
    bmi_tool = next(t for t in CALCULATOR_TOOLS if t.name == "bmi")
    bare = bare_loop(model, [search_tool, bmi_tool])

    def ask_medgraph(question: str) -> Any:
        return medgraph_graph.invoke({"messages": [HumanMessage(question)], "images": []})

    def ask_bare(question: str) -> Any:
        return bare.invoke({"messages": [HumanMessage(question)]})

    # Keep the questions medgraph routes through the full tool loop (triage may decline some).
    full_route = ["triage", "retrieve", "reason", "tools", "reason", "tools", "reason"]
    full_route += ["write", "verify", "finalize"]
    questions: list[str] = []
    routes: dict[str, int] = defaultdict(int)
    for question in candidates:
        answer = ask_medgraph(question)["answer"]
        routes[" > ".join(answer.route)] += 1
        if answer.route == full_route and answer.verification.supported_fraction == 1.0:
            questions.append(question)
    if not questions:
        raise SystemExit(f"no question took the full route; routes seen: {dict(routes)}")
    calls_before = len(model.calls)
    ask_bare(questions[0])
    bare_model_calls = len(model.calls) - calls_before
    calls_before = len(model.calls)
    ask_medgraph(questions[0])
    medgraph_model_calls = len(model.calls) - calls_before

    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(home=Path(scratch) / "home")
        settings.models = settings.models.model_copy(update={"engine": "transformers"})
        settings.graph = context.settings
        with Assistant(settings, text_model=model, image_model=model, index=index) as assistant:
            assistant.ask(questions[0])
            index.searches = index.misses = 0
            rows: dict[str, list[float]] = defaultdict(list)
            for _ in range(args.rounds):
                rows["bare"].append(per_question_ms(ask_bare, questions))
                rows["graph"].append(per_question_ms(ask_medgraph, questions))
                rows["ask"].append(per_question_ms(assistant.ask, questions))

    timer = NodeTimer()
    for question in questions:
        medgraph_graph.invoke(
            {"messages": [HumanMessage(question)], "images": []}, {"callbacks": [timer]}
        )

    bare_ms = statistics.median(rows["bare"])
    print(
        f"{len(questions)} PubMedQA dev questions taking the full route (of {len(candidates)}), "
        f"{len(documents)} abstracts, {args.rounds} rounds (median), CPU threads={os.cpu_count()}"
    )
    print(
        f"model calls per question: bare loop {bare_model_calls}, medgraph "
        f"{medgraph_model_calls} (reason x3 + write + judge); index misses {index.misses}"
    )
    print(f"\n{'orchestration':46} {'ms/question':>12} {'ratio':>8}")
    labels = {
        "bare": "bare LangGraph loop (baseline)",
        "graph": "medgraph assistant graph",
        "ask": "Assistant.ask (graph + SQLite checkpointer)",
    }
    for key, label in labels.items():
        value = statistics.median(rows[key])
        print(f"{label:46} {value:12.2f} {value / bare_ms:8.2f}")

    checkpointer_ms = statistics.median(rows["ask"]) - statistics.median(rows["graph"])
    print(
        f"SQLite checkpointer and Assistant.ask's own work (ask - graph): {checkpointer_ms:+.2f} "
        "ms/question (one checkpoint per turn, durability='exit')"
    )

    times = timer.times
    total = sum(times.node_ms.values())
    count = len(questions)
    print("\nmedgraph graph per node (traced pass; ms per question, tracing adds its own cost)")
    print(
        f"{'node':10} {'calls/q':>8} {'ms/q':>8} {'share':>7} {'model ms':>9} {'tool ms':>8} "
        f"{'own ms':>8}"
    )
    for node in sorted(times.node_ms, key=lambda n: -times.node_ms[n]):
        own = times.node_ms[node] - times.model_ms[node] - times.tool_ms[node]
        print(
            f"{node:10} {times.node_calls[node] / count:8.1f} {times.node_ms[node] / count:8.3f} "
            f"{times.node_ms[node] / total:7.1%} {times.model_ms[node] / count:9.3f} "
            f"{times.tool_ms[node] / count:8.3f} {own / count:8.3f}"
        )
    print(f"{'all nodes':10} {'':8} {total / count:8.3f}")
    print(
        "model ms: inside chat-model calls; tool ms: inside tool runs; own ms: the node's own "
        "work (prompt building, binding tools, parsing, verification)"
    )


if __name__ == "__main__":
    main()
