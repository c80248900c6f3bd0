"""Shared by the PubMedQA and multiple-choice evaluations: conditions, retrieval, constrained calls.

A question is answered under one or both *conditions*: ``retrieval`` (hybrid search over the
literature index, passages rendered and fenced as in the assistant, then the question) and
``closed_book`` (the question alone), as the MIRAGE benchmark compares them. The answer is a
structured output whose label is an enum, so on the transformers engine the grammar can only
produce a valid label; an unreadable reply is recorded as invalid, never guessed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from medgraph.errors import ConfigurationError, MedgraphError
from medgraph.evals.report import Column, EvalReport
from medgraph.evals.runner import Record, SaveFile, run_items
from medgraph.graphs.state import merge_evidence
from medgraph.knowledge.types import Evidence
from medgraph.tools.literature import EvidenceSearcher

if TYPE_CHECKING:
    from medgraph.graphs.assistant import AssistantContext
    from medgraph.settings import Settings

Condition = Literal["retrieval", "closed_book"]
CONDITIONS: tuple[Condition, ...] = ("retrieval", "closed_book")
CONDITION_TITLES = {"retrieval": "with retrieval", "closed_book": "without retrieval"}


Question = TypeVar("Question")


class ExtractiveEngineError(MedgraphError):
    """The evaluation needs a language model and the extractive engine has none."""


def conditions_for(no_retrieval: bool) -> tuple[Condition, ...]:
    """Both conditions by default; only ``closed_book`` with ``--no-retrieval``."""
    return ("closed_book",) if no_retrieval else CONDITIONS


class _NoIndex:
    """Stands in for the index when no condition retrieves (nothing is opened or loaded)."""

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        where: Mapping[str, Any] | None = None,
    ) -> list[Evidence]:
        """Never called: closed-book runs do not search."""
        raise ConfigurationError("this evaluation runs without retrieval; no index is open")


def evaluation_parts(
    settings: Settings,
    *,
    retrieval: bool,
    task: str,
    text_model: BaseChatModel | None = None,
    index: EvidenceSearcher | None = None,
) -> AssistantContext:
    """The assistant's parts for an evaluation that needs a text model.

    Raises :class:`ExtractiveEngineError` for the extractive engine. Without ``retrieval`` no
    index is opened and no embedding model is loaded; else ``index`` (default: the index the
    settings name) is searched.
    """
    from medgraph.graphs.assistant import context_from_settings

    if settings.models.engine == "extractive" and text_model is None:
        raise ExtractiveEngineError(
            f"the extractive engine (--model none) has no language model, so it cannot {task}; "
            "it would only be guessing. Run with a MedGemma checkpoint: --model "
            "google/medgemma-4b-it, a local folder, or engine 'openai' with a server"
        )
    if not retrieval:
        index = _NoIndex()
    return context_from_settings(settings, text_model=text_model, index=index)


def close_parts(parts: AssistantContext) -> None:
    """Release the literature index the parts opened (its write lock and store)."""
    close = getattr(parts.index, "close", None)
    if callable(close):
        close()


def retrieve(parts: AssistantContext, query: str) -> list[Evidence]:
    """Hybrid search for ``query``, numbered 1..k as the assistant numbers evidence."""
    if parts.index is None:
        return []
    hits = parts.index.search(query, k=parts.settings.retrieve_k)
    return merge_evidence([], hits)


@dataclass
class Decision:
    """A parsed structured reply (or the reason there is none) and how long it took."""

    reply: dict[str, Any] | None
    error: str | None
    seconds: float


def decide(model: BaseChatModel, system: str, user: str, schema: Mapping[str, Any]) -> Decision:
    """Ask ``model`` for a reply matching ``schema``; an unreadable reply is an error, not a guess.

    Engine failures (a server down, weights missing) propagate: they stop the evaluation, and the
    records saved so far let it resume.
    """
    started = time.perf_counter()
    try:
        reply = model.with_structured_output(dict(schema)).invoke(
            [SystemMessage(system), HumanMessage(user)]
        )
    except ValueError as error:  # OutputParserException and JSONDecodeError are ValueErrors
        return Decision(
            None, f"unreadable reply: {str(error).splitlines()[0][:200]}", _since(started)
        )
    if not isinstance(reply, dict):
        return Decision(None, f"reply is not a JSON object: {reply!r:.200}", _since(started))
    return Decision(reply, None, _since(started))


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def label_from(reply: dict[str, Any] | None, key: str, allowed: Sequence[str]) -> str | None:
    """The reply's ``key`` if it is one of ``allowed`` (case-insensitive), else None."""
    if reply is None:
        return None
    value = reply.get(key)
    if not isinstance(value, str):
        return None
    wanted = {label.lower(): label for label in allowed}
    return wanted.get(value.strip().lower())


def evidence_sources(evidence: Sequence[Evidence]) -> list[str]:
    """Source ids of the retrieved passages, in rank order, without repeats."""
    return list(dict.fromkeys(item.document.source_id for item in evidence))


__all__ = [
    "CONDITIONS",
    "CONDITION_TITLES",
    "Condition",
    "Decision",
    "ExtractiveEngineError",
    "close_parts",
    "conditions_for",
    "decide",
    "evaluation_parts",
    "evidence_sources",
    "label_from",
    "retrieve",
]


def evaluate_under_conditions(
    parts: AssistantContext,
    questions: Sequence[Question],
    conditions: Sequence[Condition],
    *,
    task: str,
    description: str,
    columns: Sequence[Column],
    question_id: Callable[[Question], str],
    evaluate_question: Callable[
        [AssistantContext, Question, Sequence[Condition], Record | None], Record
    ],
    summarise: Callable[[Sequence[Record], Sequence[Condition]], dict[str, Any]],
    source: str = "",
    save: Path | None = None,
    progress: bool = True,
) -> EvalReport:
    """Answer every question under ``conditions`` (resuming from ``save``) and summarise.

    A saved record counts as done when it holds a result for every condition, so adding a
    condition to an earlier run answers only what is missing.
    """
    saved = SaveFile(save, task, parts.engine) if save is not None else None
    result = run_items(
        questions,
        lambda question, previous: evaluate_question(parts, question, conditions, previous),
        item_id=question_id,
        is_complete=lambda record: all(c in record.get("results", {}) for c in conditions),
        save=saved,
        description=description,
        progress=progress,
    )
    return EvalReport(
        task=task,
        source=source,
        engine=parts.engine,
        items=len(questions),
        resumed=result.resumed,
        columns=list(columns),
        rows=summarise(result.records, conditions),
        save=str(save) if save is not None else None,
    )
