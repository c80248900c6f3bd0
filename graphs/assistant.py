"""The assistant graph: triage, image reading and retrieval in parallel, a tool-calling reasoner,
a cited writer and a verifier that removes unsupported sentences (DESIGN.md §2).

Each node is a module-level function ``(state, runtime: Runtime[AssistantContext])``: models,
index, tools and the tool-binding cache are on the run's :class:`AssistantContext` (LangGraph's
``context_schema``), so a node can be called on its own with a hand-built context.
``build_assistant_graph(settings)`` compiles the graph with its context bound and no checkpointer
(a LangGraph server adds its own); :class:`medgraph.assistant.Assistant` attaches the SQLite or
Postgres one.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langgraph.config import get_config
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import StateSnapshot, interrupt

from medgraph.agents.extractive import (
    EXTRACTIVE_LABEL,
    answer_notes,
    extractive_answer,
    on_topic_records,
)
from medgraph.agents.images import LoadedImage, image_to_data_url
from medgraph.agents.series import PreparedSeries
from medgraph.errors import MedgraphError
from medgraph.graphs.attachments import run_attachments
from medgraph.graphs.bound import with_context
from medgraph.graphs.config import GraphSettings
from medgraph.graphs.image_reading import (
    image_mode,
    plan_readings,
    reading_message,
    reading_scope,
    series_message,
    unread_text,
)
from medgraph.graphs.prompts import (
    GROUNDING_JUDGE_PROMPT,
    IMAGE_PROMPT,
    REASON_SYSTEM,
    WRITE_SYSTEM,
)
from medgraph.graphs.safety import (
    NOT_FOR_CLINICAL_USE,
    emergency_answer,
    triage_by_rules,
)
from medgraph.graphs.state import (
    Answer,
    AssistantState,
    BestDraft,
    Finding,
    ImageRef,
    Reset,
    ToolUse,
    merge_evidence,
)
from medgraph.knowledge.citations import (
    DraftSentence,
    SentenceCheck,
    Verification,
    drop_unknown_citations,
    numbers_in,
    record_numbering,
    remap_numbers,
    render_answer,
    renumber_sentences,
    resolve_record_citations,
)
from medgraph.knowledge.identifiers import scrub_report, scrub_sentences
from medgraph.knowledge.injection import flag_instructions, quarantine_report, usable_evidence
from medgraph.knowledge.types import Evidence
from medgraph.knowledge.untrusted import fence_untrusted
from medgraph.knowledge.verification import GroundingJudge, rewrite_query, verify_sentences
from medgraph.tools.image import ANALYZE_IMAGE, build_analyze_image_tool
from medgraph.tools.literature import (
    SEARCH_LITERATURE,
    EvidenceSearcher,
    render_evidence,
    render_hit_list,
    visible_where,
)
from medgraph.tools.registry import default_tools, with_user_tools

if TYPE_CHECKING:
    from medgraph.settings import Settings

Embed = Callable[[Sequence[str]], np.ndarray]
RECORD_CONTEXT_PER_RECORD = 4
"""Passages read from each record about the question before the extractive engine quotes it."""
RECORD_CONTEXT_LIMIT = 12

NO_EVIDENCE_TEXT = (
    "I found no passages in the literature index that address this question, so I cannot give a "
    "cited answer."
)
UNSUPPORTED_TEXT = (
    "The passages I retrieved did not support any sentence of the answer I drafted, so I cannot "
    "give a cited answer."
)
OUT_OF_SCOPE_TEXT = (
    "I can only help with medical and biomedical research questions, answered from the indexed "
    "literature."
)


@dataclass
class AssistantContext:
    """What the assistant graph's nodes run on, passed as LangGraph's run context
    (``context_schema``): models (None means the extractive engine), index, embedder, tools,
    settings, and the per-toolset cache of tool bindings.

    Build one with :func:`context_from_settings`; pass it as ``graph.invoke(..., context=...)``
    (graphs from :func:`build_assistant_graph` carry it already).
    """

    settings: GraphSettings = field(default_factory=GraphSettings)
    text_model: BaseChatModel | None = None
    image_model: BaseChatModel | None = None
    index: EvidenceSearcher | None = None
    embed: Embed | None = None
    engine: str = "extractive"
    tools: Sequence[BaseTool] | None = None
    """Tools offered to the reasoner; None: :func:`~medgraph.tools.registry.default_tools`.
    ``analyze_image`` is added per run when images are attached."""
    _bindings: dict[Any, tuple[tuple[BaseTool, ...], Runnable[Any, BaseMessage] | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def extractive(self) -> bool:
        """No language model: answers are quoted evidence sentences."""
        return self.text_model is None

    def offered_tools(self) -> list[BaseTool]:
        """The tools offered to the reasoner before any image tool."""
        if self.tools is not None:
            return list(self.tools)
        return default_tools(self.index, retrieve_k=self.settings.retrieve_k)

    def toolset(
        self, images: Sequence[ImageRef]
    ) -> tuple[tuple[BaseTool, ...], Runnable[Any, BaseMessage] | None]:
        """The tools for a run with ``images`` attached, and the text model bound to them.

        Building tool schemas and binding them costs milliseconds per reasoning step
        (bench/orchestration_overhead.py), so each is made once per set of attached images and
        kept (the most recent 16). Tools are stateless, so concurrent runs share them.
        """
        key = tuple((ref.image_id, ref.sha256, ref.study_id) for ref in images)
        with self._lock:
            found = self._bindings.get(key)
        if found is not None:
            return found
        tools = self.offered_tools()
        if images:
            attachments = run_attachments()
            loaded = {ref.image_id: attachments.lookup(ref.image_id, ref.sha256) for ref in images}
            studies: dict[str, list[str]] = {}
            for ref in images:
                if ref.study_id:
                    studies.setdefault(ref.study_id, []).append(ref.image_id)
            describe = functools.partial(describe_image, self)
            tools.append(build_analyze_image_tool(loaded, describe, studies))
        bound = (
            self.text_model.bind_tools(
                tools, tool_choice="auto", **_tool_prompt_options(self.text_model, self.settings)
            )
            if self.text_model is not None
            else None
        )
        made = (tuple(tools), bound)
        with self._lock:
            if len(self._bindings) >= _TOOLSETS_KEPT:
                self._bindings.pop(next(iter(self._bindings)))
            self._bindings[key] = made
        return made


_TOOLSETS_KEPT = 16


def _tool_prompt_options(model: BaseChatModel, settings: GraphSettings) -> dict[str, Any]:
    """``bind_tools`` keywords for ``model``: a brief tool list where settings (or a CPU) ask."""
    from medgraph.agents.chat_model import MedGemmaChat

    if not isinstance(model, MedGemmaChat):
        return {}
    brief = settings.brief_tool_prompt
    return {"brief_tools": model.runs_on_cpu if brief is None else brief}


AssistantRuntime = Runtime[AssistantContext]


def _emit(runtime: Runtime[Any], event: str, **data: Any) -> None:
    """A custom stream event (``stream_mode="custom"``) describing progress."""
    runtime.stream_writer({"event": event, **data})


def latest_question(messages: Sequence[BaseMessage]) -> str:
    """The text of the last human message."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text.strip()
    return ""


def _earlier_questions(messages: Sequence[BaseMessage]) -> list[str]:
    humans = [str(m.text) for m in messages if isinstance(m, HumanMessage)]
    return humans[:-1]


CLARIFY_INTERRUPT = "clarify"
"""The ``type`` of the assistant graph's interrupt payload (a clarifying question)."""


def combine_clarification(question: str, reply: str) -> str:
    """The question to answer once the user has replied to a clarifying question."""
    reply = reply.strip()
    if not reply:
        return question
    return f"{question.strip()} ({reply.rstrip('.')})"


def clarification_reply(messages: Sequence[BaseMessage]) -> tuple[str, str] | None:
    """``(original question, reply)`` when the last human turn answers a clarifying question.

    This is the path without an interrupt (a graph run with no checkpointer answers with the
    clarifying question; the caller sends the conversation back with the user's reply). The
    assistant message before the reply must be exactly the question triage asks of the turn
    before it, so an ordinary follow-up is never mistaken for a reply.
    """
    if len(messages) < 3:
        return None
    original, asked, reply = messages[-3], messages[-2], messages[-1]
    if not (
        isinstance(original, HumanMessage)
        and isinstance(asked, AIMessage)
        and isinstance(reply, HumanMessage)
    ):
        return None
    before = _earlier_questions([*messages[:-2]])
    decision = triage_by_rules(original.text.strip(), has_images=False, history=before)
    if decision.clarifying_question is None or decision.clarifying_question != asked.text.strip():
        return None
    return original.text.strip(), reply.text.strip()


def _reply_text(value: Any) -> str:
    """The user's answer from a ``Command(resume=...)`` value: a string or ``{"answer": ...}``."""
    if isinstance(value, Mapping):
        value = value.get("answer", "")
    return "" if value is None else str(value).strip()


def _can_interrupt() -> bool:
    """Whether this run has a checkpointer, without which an interrupt could never be resumed."""
    try:
        configurable = get_config().get("configurable", {})
    except RuntimeError:  # called outside a graph run
        return False
    return configurable.get(CONFIG_KEY_CHECKPOINTER) is not None


def clarification_answer(
    payload: Mapping[str, Any], engine: str, thread_id: str | None = None
) -> Answer:
    """The :class:`Answer` (kind ``clarify``) for the assistant graph's interrupt payload."""
    return Answer(
        question=str(payload.get("original_question", "")),
        text=str(payload.get("question", "")),
        route=[str(step) for step in payload.get("route", [])],
        engine=engine,
        notice=NOT_FOR_CLINICAL_USE,
        kind="clarify",
        thread_id=thread_id,
    )


def pending_clarification(
    snapshot: StateSnapshot, engine: str, thread_id: str | None = None
) -> Answer | None:
    """The clarifying question a thread is waiting on (from ``graph.get_state``), if any."""
    for pending in snapshot.interrupts:
        value = pending.value
        if isinstance(value, Mapping) and value.get("type") == CLARIFY_INTERRUPT:
            return clarification_answer(value, engine, thread_id)
    return None


def _evidence_block(evidence: Sequence[Evidence], max_chars: int | None = None) -> str:
    if not evidence:
        return "No literature passages were retrieved."
    if max_chars is not None:
        evidence = [_preview(e, max_chars) for e in evidence]
    return render_evidence(evidence)


def _preview(evidence: Evidence, max_chars: int) -> Evidence:
    """``evidence`` with its passage cut to ``max_chars`` characters (for a prompt only)."""
    text = evidence.chunk.text
    if len(text) <= max_chars:
        return evidence
    cut = text[:max_chars].rsplit(" ", 1)[0] + " …"
    return evidence.model_copy(update={"chunk": evidence.chunk.model_copy(update={"text": cut})})


def _findings_block(findings: Sequence[Finding]) -> str:
    return "\n".join(
        fence_untrusted(f"finding {f.scope or f.image_id}", f.text)
        for f in findings
        if f.text.strip()
    )


def _routed(
    runtime: AssistantRuntime,
    question: str,
    history: Sequence[str],
    images: Sequence[ImageRef],
    *,
    may_clarify: bool,
) -> dict[str, Any]:
    """Triage's state update for ``question``: route flags and fresh per-question state."""
    context = runtime.context
    decision = triage_by_rules(
        question, has_images=bool(images), history=history, image_mode=image_mode(images)
    )
    ask = may_clarify and context.settings.clarify_ambiguous and decision.ambiguous
    # Not asking (disabled, or already asked once this turn): search with what we have.
    literature = decision.needs_literature or (decision.ambiguous and not ask)
    _emit(
        runtime,
        "triage",
        emergency=decision.emergency,
        ambiguous=decision.ambiguous,
        reasons=list(decision.reasons),
    )
    return {
        "question": question,
        "query": question,
        "route": Reset(["triage"]),
        "evidence": Reset(),
        "findings": Reset(),
        "best": None,
        "retry": False,
        "emergency": decision.emergency,
        "emergency_kind": decision.emergency_kind,
        "out_of_scope": decision.out_of_scope,
        "clarifying_question": decision.clarifying_question if ask else None,
        "needs_images": bool(images),
        "needs_literature": literature and context.index is not None,
        "tool_steps": 0,
        "verify_rounds": 0,
        "draft": [],
        "deadline": _turn_deadline(context),
        "write_seconds": None,
        "limits": Reset(),
    }


def _turn_deadline(context: AssistantContext) -> float | None:
    """When a turn that starts now must end (only with a language model; quoting is quick)."""
    limit = context.settings.max_turn_seconds
    return None if limit is None or context.extractive else time.time() + limit


def _out_of_time(state: AssistantState) -> bool:
    """Whether this turn's wall-clock limit has passed."""
    deadline = state.get("deadline")
    return deadline is not None and time.time() >= deadline


REASONING_SHARE = 0.5
"""Share of a turn's time limit after which the reasoner starts no new step (the first step
always runs): the rest is the writer's and the judge's."""


JUDGE_SHARE = 0.1
"""Share of a turn's time limit kept for the model judge: the writer's generation stops that long
before the turn ends (a writer cut there ends its draft as a writer cut at the turn's end would),
so that verify starts in time to judge the draft rather than check it by wording."""


def _writer_deadline(state: AssistantState, settings: GraphSettings) -> float | None:
    """When the writer's generation must stop: the turn's end less the judge's share."""
    deadline, limit = state.get("deadline"), settings.max_turn_seconds
    if deadline is None or limit is None:
        return deadline
    return deadline - limit * JUDGE_SHARE


def _writing_time_over(state: AssistantState, settings: GraphSettings) -> bool:
    """Whether the writer's share of this turn (see :func:`_writer_deadline`) has passed."""
    cut = _writer_deadline(state, settings)
    return cut is not None and time.time() >= cut


def _reasoning_time_over(state: AssistantState, settings: GraphSettings) -> bool:
    deadline, limit = state.get("deadline"), settings.max_turn_seconds
    if deadline is None or limit is None:
        return False
    return time.time() >= deadline - limit * (1 - REASONING_SHARE)


def model_limits(
    model: BaseChatModel, max_new_tokens: int, deadline: float | None
) -> dict[str, Any]:
    """Call keywords that bound one generation of ``model``: a token budget and a deadline.

    Only :class:`~medgraph.agents.chat_model.MedGemmaChat` takes them; other chat models get
    none (their own settings bound them).
    """
    from medgraph.agents.chat_model import MedGemmaChat

    if not isinstance(model, MedGemmaChat):
        return {}
    return {"max_new_tokens": max_new_tokens, "deadline": deadline}


def triage(state: AssistantState, runtime: AssistantRuntime) -> dict[str, Any]:
    """Route the question: emergency, out of scope, ambiguous, images and/or literature."""
    messages = state.get("messages", [])
    history = _earlier_questions(messages)
    replied = clarification_reply(messages)
    if replied is not None:
        # The user answers the clarifying question of the previous turn: ask only once.
        question = combine_clarification(*replied)
        return _routed(runtime, question, history[:-1], state.get("images", []), may_clarify=False)
    question = latest_question(messages)
    return _routed(runtime, question, history, state.get("images", []), may_clarify=True)


def clarify(state: AssistantState, runtime: AssistantRuntime) -> dict[str, Any]:
    """Ask the clarifying question (an interrupt; the answer itself without a checkpointer)."""
    # Nothing with a side effect comes before the interrupt: on resume this node runs again
    # from its start, and interrupt() then returns the user's reply.
    question = state.get("question", "")
    asked = state.get("clarifying_question") or "Could you say more about your question?"
    route = [*state.get("route", []), "clarify"]
    if not _can_interrupt():
        # No checkpointer (a graph compiled bare and invoked directly): the clarifying
        # question is the answer; triage combines it with the reply the caller sends next.
        answer = Answer(
            question=question,
            text=asked,
            route=route,
            engine=runtime.context.engine,
            notice=NOT_FOR_CLINICAL_USE,
            kind="clarify",
        )
        return {"route": ["clarify"], "answer": answer, "messages": [AIMessage(asked)]}
    reply = _reply_text(
        interrupt(
            {
                "type": CLARIFY_INTERRUPT,
                "question": asked,
                "original_question": question,
                "route": route,
            }
        )
    )
    combined = combine_clarification(question, reply)
    update = _routed(
        runtime,
        combined,
        _earlier_questions(state.get("messages", [])),
        state.get("images", []),
        may_clarify=False,
    )
    _emit(runtime, "clarified", question=combined)
    update["route"] = ["clarify"]  # appended to ["triage"], not a fresh route
    update["messages"] = [AIMessage(asked), *([HumanMessage(reply)] if reply else [])]
    return update


def emergency(state: AssistantState, runtime: AssistantRuntime) -> dict[str, Any]:
    """Answer at once with where to seek care; no tool calls."""
    answer = Answer(
        question=state.get("question", ""),
        text=emergency_answer(state.get("emergency_kind")),
        route=[*state.get("route", []), "emergency"],
        engine=runtime.context.engine,
        notice=NOT_FOR_CLINICAL_USE,
        kind="emergency",
    )
    return {"route": ["emergency"], "answer": answer, "messages": [AIMessage(answer.text)]}


def decline(state: AssistantState, runtime: AssistantRuntime) -> dict[str, Any]:
    """Say that only medical and biomedical research questions are answered."""
    answer = Answer(
        question=state.get("question", ""),
        text=OUT_OF_SCOPE_TEXT,
        route=[*state.get("route", []), "decline"],
        engine=runtime.context.engine,
        notice=NOT_FOR_CLINICAL_USE,
        kind="out_of_scope",
    )
    return {"route": ["decline"], "answer": answer, "messages": [AIMessage(answer.text)]}


def _image_model_name(context: AssistantContext) -> str:
    return str(getattr(context.image_model, "model", None) or context.engine)


def describe_image(
    context: AssistantContext, target: LoadedImage | PreparedSeries, focus: str
) -> str:
    """The image reader on one image or series (the ``analyze_image`` tool's reader)."""
    if context.image_model is None:
        summary = target.describe()
        noun = "series" if isinstance(target, PreparedSeries) else "image"
        suffix = f" Image metadata: {summary}." if summary else ""
        unread = f"No image model is configured (extractive engine); the {noun} was not read."
        return unread + suffix
    # Images travel as data URLs: no model ever sees a file path.
    if isinstance(target, PreparedSeries):
        message = series_message(target, focus)
    else:
        message = HumanMessage(
            content=[
                {"type": "image", "url": image_to_data_url(target)},
                {"type": "text", "text": IMAGE_PROMPT.format(question=focus)},
            ]
        )
    reply = context.image_model.invoke([message])
    return reply.text.strip()


def read_images(state: AssistantState, runtime: AssistantRuntime) -> dict[str, Any]:
    """Describe each attached image, series, set of views or comparison, question in view."""
    context = runtime.context
    findings = []
    question = state.get("question", "")
    attachments = run_attachments()
    for reading in plan_readings(state.get("images", [])):
        _emit(
            runtime,
            "read_image",
            image_id=reading.image_id,
            kind=reading.kind,
            images=sum(len(ref.slice_numbers) or 1 for ref in reading.refs),
        )
        if context.image_model is None:
            text = unread_text(reading)
        else:
            items = [attachments.get(ref) for ref in reading.refs]
            reply = context.image_model.invoke([reading_message(reading, items, question)])
            text = reply.text.strip()
        findings.append(
            Finding(
                image_id=reading.image_id,
                text=text,
                model=_image_model_name(context),
                kind=reading.kind,
                scope=reading_scope(reading),
            )
        )
    return {"findings": findings, "route": ["read_images"]}


def search_evidence(runtime: AssistantRuntime, query: str) -> list[Evidence]:
    """The index's hits for ``query`` (visible to this run), flagged where they look like
    instructions."""
    index = runtime.context.index
    if index is None or not query.strip():
        return []
    _emit(runtime, "retrieve", query=query)
    k = runtime.context.settings.retrieve_k
    hits = flag_instructions(index.search(query, k=k, where=visible_where(None)))
    flagged = [e.source_id for e in hits if e.flags]
    _emit(runtime, "retrieved", query=query, hits=len(hits), flagged=flagged)
    return hits


def retrieve(state: AssistantState, runtime: AssistantRuntime) -> dict[str, Any]:
    """Search the index with the current query (the question, or verify's rewrite). A verify
    round whose search adds no passage ends there (``retry`` cleared): the writer would read the
    same evidence again."""
    hits = search_evidence(runtime, state.get("query") or state.get("question", ""))
    update: dict[str, Any] = {"evidence": hits, "route": ["retrieve"]}
    if state.get("verify_rounds"):
        known = {e.chunk.chunk_id for e in state.get("evidence", [])}
        if all(e.chunk.chunk_id in known for e in hits):
            update["retry"] = False
    return update


def gather(state: AssistantState, runtime: AssistantRuntime) -> dict[str, Any]:
    """Join the parallel branches; ground image findings in literature with one more search."""
    findings = [f.text for f in state.get("findings", []) if runtime.context.image_model]
    if findings and state.get("needs_literature") and not state.get("verify_rounds"):
        query = state.get("question", "") + " " + " ".join(findings)
        return {"evidence": search_evidence(runtime, query[:1000])}
    return {}


def reason(state: AssistantState, runtime: AssistantRuntime) -> dict[str, Any]:
    """One step of the text model with the tools bound: call tools, or be ready to answer."""
    context = runtime.context
    tools, bound = context.toolset(state.get("images", []))
    assert bound is not None, "reason runs only with a text model (after_gather routes)"
    steps = state.get("tool_steps", 0)
    model = context.text_model
    searches = any(t.name == SEARCH_LITERATURE for t in tools)
    if context.settings.search_first and steps == 0 and model is not None and searches:
        options = _tool_prompt_options(model, context.settings)
        bound = model.bind_tools(tools, tool_choice=SEARCH_LITERATURE, **options)
    if steps and _reasoning_time_over(state, context.settings):
        return {
            "route": ["reason"],
            "tool_steps": steps + 1,
            "limits": [
                f"time limit: the reasoner stopped after {steps} step(s) to leave the writer "
                "and the judge their share of the turn"
            ],
        }
    if _out_of_time(state):
        # No new message: the last one is the question or a tool result, so write comes next.
        return {
            "route": ["reason"],
            "tool_steps": steps + 1,
            "limits": [f"time limit: the reasoner stopped after {steps} step(s)"],
        }
    assert context.text_model is not None
    evidence = _evidence_block(state.get("evidence", []), context.settings.reason_passage_chars)
    prompt = f"{REASON_SYSTEM}\n\n{evidence}\n\n{_findings_block(state.get('findings', []))}"
    prompt = prompt.strip()
    limits = model_limits(
        context.text_model, context.settings.reason_max_tokens, state.get("deadline")
    )
    reply = bound.invoke([SystemMessage(prompt), *_turn_for_model(state)], **limits)
    update: dict[str, Any] = {"messages": [reply], "route": ["reason"], "tool_steps": steps + 1}
    if _out_of_time(state):
        update["limits"] = [f"time limit: the reasoner's step {steps + 1} was cut short"]
    return update


def call_tools(state: AssistantState, runtime: AssistantRuntime) -> dict[str, Any]:
    """Run the tool calls of the reasoner's last message; literature hits join the evidence."""
    last = state["messages"][-1]
    assert isinstance(last, AIMessage)
    tools, _ = runtime.context.toolset(state.get("images", []))
    by_name = {t.name: t for t in tools}
    evidence = list(state.get("evidence", []))
    replies: list[ToolMessage] = []
    for call in last.tool_calls:
        _emit(runtime, "tool", name=call["name"], args=call["args"])
        tool = by_name.get(call["name"])
        if tool is None:
            replies.append(
                ToolMessage(
                    f"unknown tool {call['name']!r}; available: {', '.join(by_name)}",
                    tool_call_id=call["id"] or "",
                    name=call["name"],
                    status="error",
                )
            )
            continue
        reply = tool.invoke({**call, "type": "tool_call"})
        if (
            isinstance(reply, ToolMessage)
            and isinstance(reply.artifact, list)
            and all(isinstance(e, Evidence) for e in reply.artifact)
        ):
            merged = merge_evidence(evidence, reply.artifact)
            numbered = {e.chunk.chunk_id: e for e in merged}
            shown = [numbered[e.chunk.chunk_id] for e in reply.artifact]
            evidence = merged
            # The reasoner's evidence block previews these passages and the writer reads them
            # whole from state: the message only names them (the passages again would be
            # hundreds of tokens for every later reasoner step to prefill).
            reply = ToolMessage(
                render_hit_list(shown) if shown else str(reply.content),
                tool_call_id=reply.tool_call_id,
                name=reply.name,
                artifact=None,
            )
        replies.append(reply)
    new = evidence[len(state.get("evidence", [])) :]
    return {"messages": replies, "evidence": new, "route": ["tools"]}


def _record_context(
    runtime: AssistantRuntime, question: str, evidence: Sequence[Evidence]
) -> list[Evidence]:
    """The other passages of the records about the question (their results, conclusions)."""
    context = runtime.context
    if context.index is None or not context.settings.read_whole_records or not evidence:
        return []
    records = sorted(on_topic_records(question, evidence))
    if not records:
        return []
    k = min(RECORD_CONTEXT_LIMIT, RECORD_CONTEXT_PER_RECORD * len(records))
    hits = context.index.search(question, k=k, where={"source_ids": records})
    _emit(runtime, "record_context", records=len(records), hits=len(hits))
    return flag_instructions([h for h in hits if h.source_id in records])


def write(state: AssistantState, runtime: AssistantRuntime) -> dict[str, Any]:
    """Draft the answer from the evidence, each sentence citing evidence numbers.

    Quarantined passages (instructions or markup) are neither shown to the writer nor citable;
    markers, PMIDs, DOIs and URLs a sentence does not cite are taken out of its text."""
    context = runtime.context
    evidence = state.get("evidence", [])
    question = state.get("question", "")
    extra: list[Evidence] = []
    limits: list[str] = []
    written: dict[str, Any] = {}
    if context.extractive:
        # quote from the whole of each record about the question, conclusions included
        extra = _record_context(runtime, question, evidence)
        evidence = merge_evidence(list(evidence), extra)
        sentences = extractive_answer(
            question,
            evidence,
            max_sentences=min(4, context.settings.max_answer_sentences),
            embed=context.embed,
        )
    else:
        timed_out = _writing_time_over(state, context.settings)
        started = time.monotonic()
        sentences = (
            [] if timed_out else _model_write(context, state, usable_evidence(evidence), question)
        )
        if not timed_out and state.get("write_seconds") is None:
            written["write_seconds"] = time.monotonic() - started
        if (
            not sentences
            and evidence
            and (timed_out or _writing_time_over(state, context.settings))
        ):
            # Out of time before or while writing: quote the evidence (every sentence cited)
            # rather than end with nothing, and say so.
            sentences = extractive_answer(
                question,
                evidence,
                max_sentences=min(4, context.settings.max_answer_sentences),
                embed=context.embed,
            )
            limits.append(
                "time limit: the writer had no time"
                if timed_out
                else "time limit: the writer was cut short"
            )
            limits[-1] += "; the answer quotes the evidence instead"
    _emit(runtime, "write", sentences=len(sentences))
    usable = usable_evidence(evidence)
    update: dict[str, Any] = {
        "draft": scrub_sentences(drop_unknown_citations(sentences, usable), usable),
        "route": ["write"],
        **written,
    }
    if limits:
        update["limits"] = limits
    return {**update, "evidence": extra} if extra else update


def grounding_judge(
    model: BaseChatModel | None, max_new_tokens: int = 24, deadline: float | None = None
) -> GroundingJudge | None:
    """A judge of (question, claim, passages) triples by ``model``; None without a model.

    Each verdict is two booleans, bounded by ``max_new_tokens`` and ``deadline`` (see
    :func:`model_limits`); a verdict cut short counts as unsupported.
    """
    if model is None:
        return None
    structured = model.with_structured_output(
        {
            "type": "object",
            "properties": {"supported": {"type": "boolean"}, "relevant": {"type": "boolean"}},
            "required": ["supported", "relevant"],
            "additionalProperties": False,
        },
        **model_limits(model, max_new_tokens, deadline),
    )

    def judge(triples: Sequence[tuple[str, str, str]]) -> list[tuple[float, float]]:
        prompts = [
            [
                HumanMessage(
                    GROUNDING_JUDGE_PROMPT.format(
                        question=q, claim=c, passages=fence_untrusted("passage", p)
                    )
                )
            ]
            for q, c, p in triples
        ]
        results = structured.batch(prompts)  # type: ignore[arg-type]
        return [
            (
                1.0 if isinstance(r, dict) and r.get("supported") is True else 0.0,
                1.0 if isinstance(r, dict) and r.get("relevant") is True else 0.0,
            )
            for r in results
        ]

    return judge


def verify(state: AssistantState, runtime: AssistantRuntime) -> dict[str, Any]:
    """Check each sentence against its cited passages; ask for one more retrieval when support
    is low and the budget allows."""
    context = runtime.context
    config = context.settings
    evidence = usable_evidence(state.get("evidence", []))
    computed, claims = split_computed(state.get("draft", []), _computed_output(state))
    timed_out = _out_of_time(state)
    judge = (
        None
        if timed_out
        else grounding_judge(context.text_model, config.judge_max_tokens, state.get("deadline"))
    )
    check = functools.partial(
        verify_sentences,
        claims,
        evidence,
        question=state.get("question", ""),
        embed=context.embed,
        threshold=config.support_threshold,
        relevance_floor=config.relevance_floor,
        action=config.unsupported,
        off_topic=config.off_topic,
    )
    started = time.monotonic()
    kept, report = check(grounding_judge=judge)
    check_seconds = time.monotonic() - started
    if judge is not None and _out_of_time(state):
        # The limit cut the judge's verdicts short (a cut verdict reads as "unsupported"):
        # check by wording and embeddings instead, which takes no model time.
        timed_out = True
        kept, report = check(grounding_judge=None)
    kept, report = [*computed, *kept], with_computed(report, computed)
    rounds = state.get("verify_rounds", 0)
    report = report.model_copy(
        update={
            "rounds": rounds,
            "scrubbed": scrub_report(kept),
            "quarantined": quarantine_report(state.get("evidence", [])),
        }
    )
    _emit(
        runtime,
        "verify",
        supported_fraction=report.supported_fraction,
        relevant_fraction=report.relevant_fraction,
        removed=len(report.removed),
    )
    update: dict[str, Any] = {"route": ["verify"], "retry": False}
    best = state.get("best")
    if timed_out and best is not None and _judged(best.verification):
        # A rewrite checked only by wording does not replace a draft the model judged.
        update["limits"] = [
            "time limit: the rewrite's check was cut short; the answer is the earlier draft, "
            "checked by the model judge"
        ]
        return update
    if timed_out and context.text_model is not None:
        update["limits"] = [
            "time limit: support was checked by wording and embeddings, not by the model judge"
        ]
    if best is None or report.supported_fraction >= best.verification.supported_fraction:
        update["best"] = BestDraft(sentences=kept, verification=report)
    low = report.supported_fraction < config.min_supported_fraction
    more = rounds < config.max_verify_rounds and not _out_of_time(state)
    if low and more and state.get("needs_literature"):
        skip = _no_time_to_rewrite(state, check_seconds)
        if skip:
            update["limits"] = [*update.get("limits", []), skip]
            return update
        update.update(
            retry=True,
            verify_rounds=rounds + 1,
            query=rewrite_query(
                state.get("question", ""),
                [c.sentence for c in report.sentences if not c.supported],
            ),
        )
    return update


def _judged(report: Verification) -> bool:
    """Whether the model judge gave ``report``'s verdicts."""
    return any(check.method == "judge" for check in report.sentences)


def _no_time_to_rewrite(state: AssistantState, check_seconds: float) -> str | None:
    """Why verify's rewrite round is skipped, or None when the turn has time for it: as long as
    the first draft took to write and ``check_seconds`` (its check) took to judge. A rewrite cut
    by the limit would be quoted from the evidence and checked without the model judge."""
    deadline, took = state.get("deadline"), state.get("write_seconds")
    if deadline is None or took is None:
        return None
    left = deadline - time.time()
    if left >= took + check_seconds:
        return None
    return (
        f"time limit: the rewrite round was skipped ({max(left, 0.0):.0f} s left in the turn, "
        f"the first draft took {took:.0f} s to write and {check_seconds:.0f} s to check); "
        "the answer is the first draft"
    )


def finalize(state: AssistantState, runtime: AssistantRuntime) -> dict[str, Any]:
    """The answer: the best verified draft, numbered per record, with its citations and the
    tool calls made."""
    context = runtime.context
    best = state.get("best") or BestDraft()
    pool = state.get("evidence", [])
    # verification ran on passage numbers; the answer numbers per record (PMID/DOI/path)
    mapping = record_numbering(best.sentences, pool)
    sentences = renumber_sentences(best.sentences, mapping)
    checks = [
        c.model_copy(update={"citations": remap_numbers(c.citations, mapping)})
        for c in best.verification.sentences
    ]
    route = [*state.get("route", []), "finalize"]
    kind: Literal["answer", "no_evidence"] = "answer"
    if sentences:
        text = render_answer(sentences)
        if context.extractive:
            notes = answer_notes(state.get("question", ""), best.sentences, pool)
            text = "\n\n".join([EXTRACTIVE_LABEL, text, *notes])
    else:
        # Passages were found but no drafted sentence held up: not the same as finding none.
        text, kind = UNSUPPORTED_TEXT if pool else NO_EVIDENCE_TEXT, "no_evidence"
    answer = Answer(
        question=state.get("question", ""),
        text=text,
        citations=resolve_record_citations(best.sentences, pool),
        findings=state.get("findings", []),
        tool_calls=tool_uses(state.get("messages", [])),
        route=route,
        verification=best.verification.model_copy(update={"sentences": checks}),
        engine=context.engine,
        notice=NOT_FOR_CLINICAL_USE,
        kind=kind,
        retrieved=list(dict.fromkeys(e.source_id for e in pool)),
        limits=list(dict.fromkeys(state.get("limits", []))),
    )
    return {"answer": answer, "route": ["finalize"], "messages": [AIMessage(text)]}


_EVIDENCE_TOOLS = frozenset({SEARCH_LITERATURE, ANALYZE_IMAGE})
"""Tools whose results are literature or image readings: claims from them must cite evidence."""


def _computed_output(state: AssistantState) -> str:
    """Text of this turn's successful results of computing tools (calculators, users' tools)."""
    return "\n".join(
        str(m.text)
        for m in _current_turn(state.get("messages", []))
        if isinstance(m, ToolMessage) and m.name not in _EVIDENCE_TOOLS and m.status != "error"
    )


def tool_uses(messages: Sequence[AnyMessage]) -> list[ToolUse]:
    """This turn's tool calls that ran, each with the result it got (in call order).

    Calls the graph did not run (a repeat of an earlier call, or one past the step budget) are
    left out.
    """
    turn = _current_turn(messages)
    results = {m.tool_call_id: m for m in turn if isinstance(m, ToolMessage)}
    uses = []
    for message in turn:
        if not isinstance(message, AIMessage):
            continue
        for call in message.tool_calls:
            result = results.get(call["id"] or "")
            if result is not None:
                uses.append(
                    ToolUse(
                        name=call["name"],
                        args=call["args"],
                        result=str(result.text),
                        status=result.status,
                    )
                )
    return uses


def _backed_by(number: str, results: set[str]) -> bool:
    """``number`` equals a calculator result, or that result rounded to as many decimals."""
    decimals = len(number.split(".")[1]) if "." in number else 0
    try:
        wanted = float(number)
        return any(round(float(r), decimals) == wanted for r in results)
    except ValueError:
        return number in results


def split_computed(
    sentences: Sequence[DraftSentence], calculator_output: str
) -> tuple[list[DraftSentence], list[DraftSentence]]:
    """Separate uncited sentences that state computed results from literature claims.

    ``calculator_output`` is the text of this turn's calculator (and other computing tool)
    results. A computed sentence cites nothing and every number in it is such a result (allowing
    rounding); it is checked against the calculation, not the literature.
    """
    results = numbers_in(calculator_output, words=False)
    computed, claims = [], []
    for sentence in sentences:
        stated = numbers_in(sentence.text, words=False)
        if (
            results
            and stated
            and not sentence.citations
            and all(_backed_by(n, results) for n in stated)
        ):
            computed.append(sentence)
        else:
            claims.append(sentence)
    return computed, claims


def with_computed(report: Verification, computed: Sequence[DraftSentence]) -> Verification:
    """``report`` with the computed sentences counted as supported by their calculation."""
    if not computed:
        return report
    checks = [
        SentenceCheck(sentence=s.text, supported=True, score=1.0, method="calculator")
        for s in computed
    ]
    sentences = [*checks, *report.sentences]
    claims = [c for c in sentences if c.method != "no-claim"]
    fraction = sum(c.supported for c in claims) / len(claims) if claims else 1.0
    return report.model_copy(update={"sentences": sentences, "supported_fraction": fraction})


def _current_turn(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """Messages from the last human message on (this question and its tool exchanges)."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage):
            return list(messages[index:])
    return list(messages)


def _turn_for_model(state: AssistantState) -> list[AnyMessage]:
    """This turn's messages, opening with the question being answered.

    After a clarification the last human message is only the user's reply ("multiple sclerosis");
    the model is shown the combined question instead.
    """
    turn = _current_turn(state.get("messages", []))
    question = state.get("question", "")
    if turn and isinstance(turn[0], HumanMessage) and question and turn[0].text != question:
        return [HumanMessage(question), *turn[1:]]
    return turn


def _model_write(
    context: AssistantContext,
    state: AssistantState,
    evidence: Sequence[Evidence],
    question: str,
) -> list[DraftSentence]:
    assert context.text_model is not None
    numbers = [e.number for e in evidence if e.number is not None]
    schema = {
        "type": "object",
        "properties": {
            "sentences": {
                "type": "array",
                "minItems": 1,
                "maxItems": context.settings.max_answer_sentences,
                "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "maxLength": 400},
                        "citations": {
                            "type": "array",
                            "items": {"type": "integer", "enum": numbers} if numbers else {},
                            "maxItems": 3 if numbers else 0,
                        },
                    },
                    "required": ["text", "citations"],
                },
            }
        },
        "required": ["sentences"],
    }
    # Literature results are in the evidence block already (numbered); other tools' are not.
    tool_results = [
        m.text
        for m in _current_turn(state.get("messages", []))
        if isinstance(m, ToolMessage) and m.name != SEARCH_LITERATURE
    ]
    prompt = "\n\n".join(
        part
        for part in (
            WRITE_SYSTEM,
            _evidence_block(evidence),
            _findings_block(state.get("findings", [])),
            "\n".join(fence_untrusted("tool result", t) for t in tool_results if t),
        )
        if part
    )
    try:
        limits = model_limits(
            context.text_model,
            context.settings.write_max_tokens,
            _writer_deadline(state, context.settings),
        )
        result = context.text_model.with_structured_output(schema, **limits).invoke(
            [SystemMessage(prompt), HumanMessage(question)]
        )
    except (MedgraphError, ValueError, json.JSONDecodeError):
        return []  # an unusable reply writes nothing; finalize then says so, never invents
    if not isinstance(result, dict):
        return []
    sentences = []
    for item in result.get("sentences", []):
        if isinstance(item, dict) and str(item.get("text", "")).strip():
            cited = [int(n) for n in item.get("citations", []) if isinstance(n, int)]
            sentences.append(DraftSentence(text=str(item["text"]).strip(), citations=cited))
    return sentences


Branch = Literal["read_images", "retrieve"]


def route_after_triage(
    state: AssistantState,
) -> Literal["emergency", "decline", "clarify", "gather"] | list[Branch]:
    """Emergency and out-of-scope end at once, an ambiguous question is clarified first;
    otherwise image reading and/or retrieval (in parallel when both)."""
    if state.get("emergency"):
        return "emergency"
    if state.get("out_of_scope"):
        return "decline"
    if state.get("clarifying_question"):
        return "clarify"
    branches: list[Branch] = []
    if state.get("needs_images"):
        branches.append("read_images")
    if state.get("needs_literature"):
        branches.append("retrieve")
    return branches or "gather"


def route_after_clarify(
    state: AssistantState,
) -> Literal["emergency", "decline", "clarify", "gather", "__end__"] | list[Branch]:
    """Ends when the clarifying question was the answer (no checkpointer); else routes the
    clarified question like triage does."""
    if state.get("clarifying_question"):
        return "__end__"  # END
    return route_after_triage(state)


def route_after_gather(
    state: AssistantState, runtime: AssistantRuntime
) -> Literal["reason", "write"]:
    """The reasoner's tool loop, unless there is no text model or this is a verify round."""
    return "write" if runtime.context.extractive or state.get("verify_rounds") else "reason"


def route_after_retrieve(
    state: AssistantState, runtime: AssistantRuntime
) -> Literal["gather", "reason", "write", "finalize"]:
    """Join the image branch at ``gather`` on the first round with images; else go on at once
    (``gather`` would have nothing to add: one superstep less per question). A verify round
    whose search found nothing new finalizes the best draft so far."""
    if state.get("verify_rounds") and not state.get("retry"):
        return "finalize"
    if state.get("needs_images") and not state.get("verify_rounds"):
        return "gather"
    return route_after_gather(state, runtime)


def route_after_reason(
    state: AssistantState, runtime: AssistantRuntime
) -> Literal["tools", "write"]:
    """Run the tools the reasoner asked for while the step budget lasts; else write."""
    last = state["messages"][-1]
    wants_tools = isinstance(last, AIMessage) and bool(last.tool_calls)
    if not wants_tools or state.get("tool_steps", 0) > runtime.context.settings.max_tool_steps:
        return "write"
    # Calls the model already made this turn would only return what it has read; small models
    # repeat their search until the step budget runs out, each step prefilling a longer prompt.
    return "write" if _repeats_earlier_calls(state["messages"]) else "tools"


def _repeats_earlier_calls(messages: Sequence[BaseMessage]) -> bool:
    """Whether every tool call of the last message was made earlier in this turn."""
    last = messages[-1]
    assert isinstance(last, AIMessage)
    earlier: set[str] = set()
    for message in reversed(messages[:-1]):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, AIMessage):
            earlier.update(_call_key(call) for call in message.tool_calls)
    return all(_call_key(call) in earlier for call in last.tool_calls)


def _call_key(call: Mapping[str, Any]) -> str:
    return json.dumps([call["name"], call["args"]], sort_keys=True, default=str)


def route_after_verify(state: AssistantState) -> Literal["retrieve", "finalize"]:
    """One more retrieval round when verify asked for it."""
    return "retrieve" if state.get("retry") else "finalize"


def assemble_assistant_graph() -> StateGraph[AssistantState, AssistantContext]:
    """The uncompiled assistant graph (for composition in users' own graphs); its nodes read
    models, index and tools from the run's :class:`AssistantContext`."""
    graph: StateGraph[AssistantState, AssistantContext] = StateGraph(
        AssistantState, context_schema=AssistantContext
    )
    graph.add_node("triage", triage)
    graph.add_node("clarify", clarify)
    graph.add_node("emergency", emergency)
    graph.add_node("decline", decline)
    graph.add_node("read_images", read_images)
    graph.add_node("retrieve", retrieve)
    graph.add_node("gather", gather)
    graph.add_node("reason", reason)
    graph.add_node("tools", call_tools)
    graph.add_node("write", write)
    graph.add_node("verify", verify)
    graph.add_node("finalize", finalize)
    graph.add_edge(START, "triage")
    after_triage = ["emergency", "decline", "read_images", "retrieve", "gather"]
    graph.add_conditional_edges("triage", route_after_triage, [*after_triage, "clarify"])
    graph.add_conditional_edges("clarify", route_after_clarify, [*after_triage, END])
    graph.add_edge("emergency", END)
    graph.add_edge("decline", END)
    graph.add_edge("read_images", "gather")
    graph.add_conditional_edges(
        "retrieve", route_after_retrieve, ["gather", "reason", "write", "finalize"]
    )
    graph.add_conditional_edges("gather", route_after_gather, ["reason", "write"])
    graph.add_conditional_edges("reason", route_after_reason, ["tools", "write"])
    graph.add_edge("tools", "reason")
    graph.add_edge("write", "verify")
    graph.add_conditional_edges("verify", route_after_verify, ["retrieve", "finalize"])
    graph.add_edge("finalize", END)
    return graph


def compile_assistant_graph(context: AssistantContext, **compile_kwargs: Any) -> CompiledStateGraph:
    """The assistant graph compiled (``compile_kwargs`` go to ``StateGraph.compile``) with
    ``context`` bound as its default run context."""
    return with_context(assemble_assistant_graph().compile(**compile_kwargs), context)


def context_from_settings(
    settings: Settings,
    *,
    text_model: BaseChatModel | None = None,
    image_model: BaseChatModel | None = None,
    index: EvidenceSearcher | None = None,
    tools: Sequence[BaseTool] = (),
) -> AssistantContext:
    """Models, index and tools as ``settings`` describe them; arguments given here take precedence.

    Engine ``extractive`` (``--model none``) uses no language model. When both roles name the same
    checkpoint they share one loaded copy (the transformers engine's process-wide cache).
    ``tools`` are offered to the reasoner beside :func:`~medgraph.tools.registry.default_tools`
    (a name already taken raises :class:`~medgraph.tools.registry.ToolNameConflictError`).
    """
    from medgraph.agents.chat_model import MedGemmaChat

    models = settings.models
    if models.engine == "transformers" and (text_model is None or image_model is None):
        from medgraph.loading import preload_model_libraries

        # Before any graph branch runs in a thread (see medgraph.loading).
        preload_model_libraries()
    if models.engine != "extractive":
        text_model = text_model or MedGemmaChat.from_settings(models, "text")
        image_model = image_model or MedGemmaChat.from_settings(models, "image")
    if index is None:
        from medgraph.knowledge.index import LiteratureIndex

        index = LiteratureIndex(settings.knowledge)
    embedder = getattr(index, "embedder", None)
    embed = embedder.embed_documents if embedder is not None else None
    if text_model is None:
        engine = "extractive"
    else:
        engine = f"{getattr(text_model, 'engine', 'custom')}:{getattr(text_model, 'model', '?')}"
    offered = with_user_tools(
        default_tools(index, retrieve_k=settings.graph.retrieve_k), list(tools)
    )
    return AssistantContext(
        settings=settings.graph,
        text_model=text_model,
        image_model=image_model,
        index=index,
        embed=embed,
        engine=engine,
        tools=offered,
    )


def build_assistant_graph(
    settings: Settings | None = None,
    *,
    text_model: BaseChatModel | None = None,
    image_model: BaseChatModel | None = None,
    index: EvidenceSearcher | None = None,
    tools: Sequence[BaseTool] = (),
    **compile_kwargs: Any,
) -> CompiledStateGraph:
    """The compiled assistant graph for ``settings``, its context bound (no checkpointer unless
    one is passed). ``tools``: LangChain tools of your own, offered to the reasoner beside the
    default ones."""
    from medgraph.settings import Settings

    context = context_from_settings(
        settings or Settings(),
        text_model=text_model,
        image_model=image_model,
        index=index,
        tools=tools,
    )
    return compile_assistant_graph(context, **compile_kwargs)


def make_graph() -> CompiledStateGraph:
    """Entry point for ``langgraph.json``: settings from the environment, no checkpointer."""
    return build_assistant_graph()
