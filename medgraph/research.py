"""Research reports through an :class:`~medgraph.assistant.Assistant`: run, stream, resume.

    >>> from medgraph import Assistant, Settings
    >>> with Assistant(Settings.preset("offline")) as assistant:
    ...     report = assistant.research("metformin and lactic acidosis in kidney disease")
    >>> print(report.markdown)

With ``approve_plan=True`` the run stops at the plan (``report.status == "awaiting_approval"``);
:func:`resume_research` continues it — in the same process or another one that opens the same
checkpoint file — with ``"accept"``, an edited list of sub-questions, or ``"cancel"``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot
from pydantic import ValidationError

from medgraph.errors import ConfigurationError, MedgraphError
from medgraph.graphs.config import ResearchSettings
from medgraph.graphs.research import (
    BibliographyEntry,
    EmptyPlanError,
    EmptyTopicError,
    InvalidPlanDecisionError,
    Report,
    ReportSection,
    ReportVerification,
    SubQuestion,
    build_research_graph,
    parse_decision,
    plan_markdown,
)

if TYPE_CHECKING:
    from medgraph.assistant import Assistant

__all__ = [
    "BibliographyEntry",
    "EmptyPlanError",
    "EmptyTopicError",
    "InvalidPlanDecisionError",
    "NotAwaitingApprovalError",
    "Report",
    "ReportSection",
    "ReportVerification",
    "ResearchThreadExistsError",
    "SubQuestion",
    "UnknownResearchThreadError",
    "build_research_graph",
    "load_research",
    "resume_research",
    "run_research",
    "stream_research",
    "stream_resume",
]

EventHandler = Callable[[dict[str, Any]], None]


class UnknownResearchThreadError(MedgraphError):
    """No research run was checkpointed under the given thread id."""


class NotAwaitingApprovalError(MedgraphError):
    """The research run exists but is not waiting at plan approval."""


class ResearchThreadExistsError(MedgraphError):
    """A new research run was asked to use a thread id that is already taken."""


def _budgets(base: ResearchSettings, overrides: dict[str, Any]) -> ResearchSettings:
    unknown = set(overrides) - set(ResearchSettings.model_fields)
    if unknown:
        raise ConfigurationError(
            f"unknown research option(s) {', '.join(sorted(unknown))}; known: "
            f"{', '.join(ResearchSettings.model_fields)}"
        )
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return ResearchSettings.model_validate({**base.model_dump(), **given})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ConfigurationError(f"invalid research budget: {problems}") from error


def _config(thread_id: str, budgets: ResearchSettings) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}, "max_concurrency": budgets.max_parallel}


def _outcome(snapshot: StateSnapshot, thread_id: str, engine: str) -> Report:
    """The report of a finished run, or the plan of one waiting at approval."""
    values = snapshot.values
    if snapshot.interrupts:
        plan: list[SubQuestion] = list(values.get("plan", []))
        title = values.get("title") or values.get("topic", "")
        return Report(
            topic=values.get("topic", ""),
            title=title,
            markdown=plan_markdown(title, plan),
            status="awaiting_approval",
            plan=plan,
            limitations=list(values.get("notes", [])),
            budget_notes=list(values.get("notes", [])),
            model_calls=values.get("plan_calls", 0),
            engine=engine,
            thread_id=thread_id,
        )
    report: Report = values["report"]
    return report.model_copy(update={"thread_id": thread_id})


def stream_research(
    assistant: Assistant,
    topic: str,
    *,
    approve_plan: bool = False,
    thread_id: str | None = None,
    **budgets: Any,
) -> Iterator[tuple[str, Any]]:
    """Yield ``("custom", event)`` progress events, then ``("report", Report)``.

    Events name the step: ``plan`` (the sub-questions), ``subquestion`` / ``subquestion_done``
    (``index``, ``total``, ``question``), the assistant's own ``retrieve``/``write``/``verify``
    and ``report``. ``budgets`` override :class:`~medgraph.graphs.config.ResearchSettings`
    fields for this run (``max_subquestions=3``, ``max_model_calls=20``, ...).
    """
    if not topic or not topic.strip():
        raise EmptyTopicError(
            "the research topic is empty; give a topic, e.g. 'statins for primary prevention in "
            "older adults'"
        )
    settings = _budgets(assistant.settings.research, budgets)
    graph = assistant.research_graph
    thread = thread_id or f"research-{uuid.uuid4().hex}"
    config = _config(thread, settings)
    if thread_id is not None and graph.get_state(config).values:
        raise ResearchThreadExistsError(
            f"thread id {thread_id!r} is already used; resume it with resume_research, or give a "
            "new thread id"
        )
    state = {"topic": topic.strip(), "approve_plan": approve_plan, "budgets": settings}
    # subgraphs=True: the sub-question branches are subgraphs, and their events come from there
    for _, event in graph.stream(state, config, stream_mode="custom", subgraphs=True):
        yield "custom", event
    yield "report", _outcome(graph.get_state(config), thread, assistant.engine)


def _last_report(stream: Iterator[tuple[str, Any]], on_event: EventHandler | None) -> Report:
    report: Report | None = None
    for mode, data in stream:
        if mode == "report":
            report = data
        elif on_event is not None and isinstance(data, dict):
            on_event(data)
    assert report is not None
    return report


def run_research(
    assistant: Assistant,
    topic: str,
    *,
    approve_plan: bool = False,
    thread_id: str | None = None,
    on_event: EventHandler | None = None,
    **budgets: Any,
) -> Report:
    """A cited markdown report on ``topic`` (``status="awaiting_approval"`` with ``approve_plan``).

    ``on_event`` receives each progress event (see :func:`stream_research`).
    """
    stream = stream_research(
        assistant, topic, approve_plan=approve_plan, thread_id=thread_id, **budgets
    )
    return _last_report(stream, on_event)


def _checkpointed(graph: CompiledStateGraph, thread_id: str) -> StateSnapshot:
    """The checkpointed state of research thread ``thread_id`` (which must exist)."""
    snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
    if not snapshot.values or "topic" not in snapshot.values:
        raise UnknownResearchThreadError(
            f"no research run with thread id {thread_id!r}; start one with "
            "`medgraph research TOPIC --approve` (or Assistant.research(..., approve_plan=True)) "
            "and use the thread id it prints"
        )
    return snapshot


def load_research(assistant: Assistant, thread_id: str) -> Report:
    """The current report of research thread ``thread_id``: finished, cancelled or awaiting."""
    snapshot = _checkpointed(assistant.research_graph, thread_id)
    return _outcome(snapshot, thread_id, assistant.engine)


def stream_resume(
    assistant: Assistant, thread_id: str, decision: Any = "accept"
) -> Iterator[tuple[str, Any]]:
    """Like :func:`stream_research`, continuing a run that waits at plan approval.

    ``decision``: ``"accept"``, ``"cancel"``, or an edited plan (a list of sub-questions, as
    strings or ``{"question", "why"}`` mappings). An edited plan with no items raises
    :class:`EmptyPlanError` and leaves the run waiting.
    """
    graph = assistant.research_graph
    snapshot = _checkpointed(graph, thread_id)
    values = snapshot.values
    config = _config(thread_id, values.get("budgets") or assistant.settings.research)
    if not snapshot.interrupts:
        status = values["report"].status if isinstance(values.get("report"), Report) else "running"
        raise NotAwaitingApprovalError(
            f"research thread {thread_id!r} is not waiting for plan approval (status: {status}); "
            "only a run started with approve_plan=True (--approve) can be resumed"
        )
    resume = parse_decision(decision)
    command: Command[Any] = Command(resume=resume.model_dump())
    for _, event in graph.stream(command, config, stream_mode="custom", subgraphs=True):
        yield "custom", event
    yield "report", _outcome(graph.get_state(config), thread_id, assistant.engine)


def resume_research(
    assistant: Assistant,
    thread_id: str,
    decision: Any = "accept",
    *,
    on_event: EventHandler | None = None,
) -> Report:
    """Continue research thread ``thread_id`` at plan approval (see :func:`stream_resume`)."""
    return _last_report(stream_resume(assistant, thread_id, decision), on_event)
