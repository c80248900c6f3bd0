"""``medgraph eval pubmedqa``: yes/no/maybe by structured output, with and without retrieval.

For each question and condition the text model returns JSON whose ``answer`` is an enum of
``yes``/``no``/``maybe`` (the transformers engine's grammar enforces it). With retrieval the reply
also carries one to three reasons, each citing retrieved passages by number; those sentences are
checked against the passages they cite (:func:`~medgraph.knowledge.verification.verify_sentences`,
lexical + embedding support, no extra model calls), which gives the supported fraction of the
answer. Scores: accuracy and macro-F1 per condition, the mean supported fraction, and how often
the gold abstract was among the retrieved passages.
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
from medgraph.evals.metrics import accuracy, macro_f1, per_label_scores
from medgraph.evals.prompts import PUBMEDQA_CLOSED_BOOK, PUBMEDQA_RETRIEVAL
from medgraph.evals.records import YES_NO_MAYBE, YesNoQuestion
from medgraph.evals.report import Column, EvalReport, mean
from medgraph.evals.runner import Record
from medgraph.graphs.assistant import AssistantContext
from medgraph.knowledge.citations import (
    Citation,
    DraftSentence,
    drop_unknown_citations,
    render_answer,
    resolve_citations,
)
from medgraph.knowledge.types import Evidence
from medgraph.knowledge.verification import verify_sentences
from medgraph.tools.literature import render_evidence

TASK = "pubmedqa"
MAX_REASONS = 3
REASON_MAX_CHARS = 300
REASONING_MAX_CHARS = 400

COLUMNS = [
    Column("n", "n", "{:d}"),
    Column("accuracy", "accuracy"),
    Column("macro_f1", "macro-F1"),
    Column("invalid", "invalid", "{:d}"),
    Column("supported", "supported"),
    Column("gold_retrieved", "gold retrieved"),
    Column("seconds_per_question", "s/question", "{:.2f}"),
]


def retrieval_schema(numbers: Sequence[int]) -> dict[str, Any]:
    """Reasons citing evidence numbers that exist, then the yes/no/maybe answer."""
    citation: dict[str, Any] = {"type": "integer", "enum": list(numbers)} if numbers else {}
    return {
        "type": "object",
        "properties": {
            "reasons": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_REASONS,
                "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "maxLength": REASON_MAX_CHARS},
                        "citations": {
                            "type": "array",
                            "items": citation,
                            "maxItems": 3 if numbers else 0,
                        },
                    },
                    "required": ["text", "citations"],
                },
            },
            "answer": {"type": "string", "enum": list(YES_NO_MAYBE)},
        },
        "required": ["reasons", "answer"],
    }


CLOSED_BOOK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string", "maxLength": REASONING_MAX_CHARS},
        "answer": {"type": "string", "enum": list(YES_NO_MAYBE)},
    },
    "required": ["reasoning", "answer"],
}


def citation_json(citation: Citation, passage: str) -> dict[str, Any]:
    """A citation in the ``medgraph ask --json`` shape, plus the full cited ``passage``."""
    return {
        "n": citation.n,
        "source_id": citation.source_id,
        "title": citation.title,
        "year": citation.year,
        "journal": citation.journal,
        "url": citation.url,
        "quote": citation.quote,
        "span": [citation.start, citation.end],
        "passage": passage,
    }


def _reasons(reply: dict[str, Any] | None) -> list[DraftSentence]:
    sentences: list[DraftSentence] = []
    for item in (reply or {}).get("reasons", []) or []:
        if not isinstance(item, dict) or not str(item.get("text", "")).strip():
            continue
        cited = [n for n in item.get("citations", []) or [] if isinstance(n, int)]
        sentences.append(DraftSentence(text=str(item["text"]).strip(), citations=cited))
    return sentences


def answer_with_retrieval(parts: AssistantContext, question: YesNoQuestion) -> dict[str, Any]:
    """Retrieve, decide with cited reasons, and verify the reasons against their passages."""
    assert parts.text_model is not None
    evidence: list[Evidence] = retrieve(parts, question.question)
    numbers = [e.number for e in evidence if e.number is not None]
    system = f"{PUBMEDQA_RETRIEVAL}\n\n{render_evidence(evidence)}"
    decision = decide(parts.text_model, system, question.question, retrieval_schema(numbers))
    sentences = drop_unknown_citations(_reasons(decision.reply), evidence)
    _, verification = verify_sentences(
        sentences,
        evidence,
        embed=parts.embed,
        threshold=parts.settings.support_threshold,
        action="mark",
    )
    claims = [c for c in verification.sentences if c.method != "no-claim"]
    by_number = {e.number: e for e in evidence}
    sources = evidence_sources(evidence)
    return {
        "prediction": label_from(decision.reply, "answer", YES_NO_MAYBE),
        "answer": render_answer(sentences),
        "citations": [
            citation_json(c, by_number[c.n].chunk.text)
            for c in resolve_citations(sentences, evidence)
        ],
        "verification": verification.model_dump(),
        "supported_fraction": verification.supported_fraction if claims else None,
        "evidence": sources,
        "gold_retrieved": (question.source_id in sources) if question.source_id else None,
        "seconds": decision.seconds,
        "error": decision.error,
    }


def answer_closed_book(parts: AssistantContext, question: YesNoQuestion) -> dict[str, Any]:
    """Decide from the question alone."""
    assert parts.text_model is not None
    decision = decide(parts.text_model, PUBMEDQA_CLOSED_BOOK, question.question, CLOSED_BOOK_SCHEMA)
    reasoning = (decision.reply or {}).get("reasoning")
    return {
        "prediction": label_from(decision.reply, "answer", YES_NO_MAYBE),
        "reasoning": reasoning if isinstance(reasoning, str) else None,
        "seconds": decision.seconds,
        "error": decision.error,
    }


def evaluate_question(
    parts: AssistantContext,
    question: YesNoQuestion,
    conditions: Sequence[Condition],
    previous: Record | None = None,
) -> Record:
    """The save record of one question: every condition's result (kept from ``previous``)."""
    results: dict[str, Any] = dict((previous or {}).get("results", {}))
    for condition in conditions:
        if condition in results:
            continue
        if condition == "retrieval":
            results[condition] = answer_with_retrieval(parts, question)
        else:
            results[condition] = answer_closed_book(parts, question)
    primary = results.get("retrieval") or results["closed_book"]
    return {
        "task": TASK,
        "id": question.id,
        "question": question.question,
        "gold": question.gold,
        "source_id": question.source_id,
        "engine": parts.engine,
        "prediction": primary["prediction"],
        "answer": primary.get("answer", ""),
        "citations": primary.get("citations", []),
        "verification": primary.get("verification"),
        "results": results,
    }


def summarise(records: Sequence[Record], conditions: Sequence[Condition]) -> dict[str, Any]:
    """Per condition: accuracy, macro-F1, per-label scores, invalid replies, support, timing."""
    rows: dict[str, Any] = {}
    golds = [str(r["gold"]) for r in records]
    for condition in conditions:
        results = [r["results"][condition] for r in records]
        predictions = [res.get("prediction") for res in results]
        supported = [
            float(res["supported_fraction"])
            for res in results
            if res.get("supported_fraction") is not None
        ]
        retrieved = [
            bool(res["gold_retrieved"]) for res in results if res.get("gold_retrieved") is not None
        ]
        rows[CONDITION_TITLES[condition]] = {
            "condition": condition,
            "n": len(records),
            "accuracy": accuracy(predictions, golds),
            "macro_f1": macro_f1(predictions, golds),
            "invalid": sum(p is None for p in predictions),
            "supported": mean(supported),
            "supported_answers": len(supported),
            "gold_retrieved": mean([float(x) for x in retrieved]),
            "seconds_per_question": mean([float(res.get("seconds", 0.0)) for res in results]),
            "labels": {
                s.label: {
                    "precision": s.precision,
                    "recall": s.recall,
                    "f1": s.f1,
                    "support": s.support,
                }
                for s in per_label_scores(predictions, golds)
            },
        }
    return rows


def evaluate_pubmedqa(
    parts: AssistantContext,
    questions: Sequence[YesNoQuestion],
    conditions: Sequence[Condition],
    *,
    source: str = "",
    save: Path | None = None,
    progress: bool = True,
) -> EvalReport:
    """Run (or resume from ``save``) the PubMedQA evaluation and summarise it."""
    return evaluate_under_conditions(
        parts,
        questions,
        conditions,
        task=TASK,
        description="PubMedQA",
        columns=COLUMNS,
        question_id=lambda question: question.id,
        evaluate_question=evaluate_question,
        summarise=summarise,
        source=source,
        save=save,
        progress=progress,
    )


__all__ = [
    "CLOSED_BOOK_SCHEMA",
    "answer_closed_book",
    "answer_with_retrieval",
    "evaluate_pubmedqa",
    "evaluate_question",
    "retrieval_schema",
    "summarise",
]
