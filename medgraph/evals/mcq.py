"""``medgraph eval mcq``: MedQA-style multiple choice, with and without retrieval (as MIRAGE does).

The model thinks briefly and picks one option letter; the letter is an enum of the question's
option letters, so the transformers engine's grammar can only produce a real option. With
retrieval, the passages found for the question (hybrid search) come first in the prompt, rendered
and fenced as in the assistant; without, the question stands alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgraph.evals.answering import (
    CONDITION_TITLES,
    Condition,
    decide,
    evaluate_under_conditions,
    evidence_sources,
    label_from,
    retrieve,
)
from medgraph.evals.metrics import accuracy
from medgraph.evals.prompts import MCQ_CLOSED_BOOK, MCQ_RETRIEVAL, mcq_question
from medgraph.evals.records import ChoiceQuestion
from medgraph.evals.report import Column, EvalReport, mean
from medgraph.evals.runner import Record
from medgraph.graphs.assistant import AssistantContext
from medgraph.tools.literature import render_evidence

TASK = "mcq"
REASONING_MAX_CHARS = 600

COLUMNS = [
    Column("n", "n", "{:d}"),
    Column("accuracy", "accuracy"),
    Column("invalid", "invalid", "{:d}"),
    Column("seconds_per_question", "s/question", "{:.2f}"),
]


def choice_schema(letters: Sequence[str]) -> dict[str, Any]:
    """Brief reasoning, then one of ``letters``."""
    return {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string", "maxLength": REASONING_MAX_CHARS},
            "answer": {"type": "string", "enum": list(letters)},
        },
        "required": ["reasoning", "answer"],
    }


def answer_question(
    parts: AssistantContext, question: ChoiceQuestion, condition: Condition
) -> dict[str, Any]:
    """One condition's answer to one question: the chosen letter, its reasoning, timing."""
    assert parts.text_model is not None
    letters = list(question.options)
    user = mcq_question(question.question, question.options)
    sources: list[str] = []
    if condition == "retrieval":
        evidence = retrieve(parts, question.question)
        sources = evidence_sources(evidence)
        system = f"{MCQ_RETRIEVAL}\n\n{render_evidence(evidence)}"
    else:
        system = MCQ_CLOSED_BOOK
    decision = decide(parts.text_model, system, user, choice_schema(letters))
    reasoning = (decision.reply or {}).get("reasoning")
    result: dict[str, Any] = {
        "prediction": label_from(decision.reply, "answer", letters),
        "reasoning": reasoning if isinstance(reasoning, str) else None,
        "seconds": decision.seconds,
        "error": decision.error,
    }
    if condition == "retrieval":
        result["evidence"] = sources
    return result


def evaluate_question(
    parts: AssistantContext,
    question: ChoiceQuestion,
    conditions: Sequence[Condition],
    previous: Record | None = None,
) -> Record:
    """The save record of one question: every condition's result (kept from ``previous``)."""
    results: dict[str, Any] = dict((previous or {}).get("results", {}))
    for condition in conditions:
        if condition not in results:
            results[condition] = answer_question(parts, question, condition)
    primary = results.get("retrieval") or results["closed_book"]
    return {
        "task": TASK,
        "id": question.id,
        "question": question.question,
        "options": question.options,
        "gold": question.gold,
        "engine": parts.engine,
        "prediction": primary["prediction"],
        "results": results,
    }


def summarise(records: Sequence[Record], conditions: Sequence[Condition]) -> dict[str, Any]:
    """Per condition: accuracy, invalid replies and seconds per question."""
    rows: dict[str, Any] = {}
    golds = [str(r["gold"]) for r in records]
    for condition in conditions:
        results = [r["results"][condition] for r in records]
        predictions = [res.get("prediction") for res in results]
        rows[CONDITION_TITLES[condition]] = {
            "condition": condition,
            "n": len(records),
            "accuracy": accuracy(predictions, golds),
            "invalid": sum(p is None for p in predictions),
            "seconds_per_question": mean([float(res.get("seconds", 0.0)) for res in results]),
        }
    return rows


def evaluate_mcq(
    parts: AssistantContext,
    questions: Sequence[ChoiceQuestion],
    conditions: Sequence[Condition],
    *,
    source: str = "",
    save: Path | None = None,
    progress: bool = True,
) -> EvalReport:
    """Run (or resume from ``save``) the multiple-choice evaluation and summarise it."""
    return evaluate_under_conditions(
        parts,
        questions,
        conditions,
        task=TASK,
        description="MedQA",
        columns=COLUMNS,
        question_id=lambda question: question.id,
        evaluate_question=evaluate_question,
        summarise=summarise,
        source=source,
        save=save,
        progress=progress,
    )


__all__ = ["answer_question", "choice_schema", "evaluate_mcq", "evaluate_question", "summarise"]
