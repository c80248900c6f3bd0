"""``medgraph eval answers``: does the assistant's answer stay on the question and cite its source?

Every question is put to the assistant graph (the same graph ``medgraph ask`` runs, clarifying
questions switched off) and its final answer is scored:

- **gold share of cited sentences**: of the answer's sentences that cite something, the share
  citing the question's gold record (PubMedQA: the abstract the question was written from; there
  is exactly one relevant record per question). Micro average over all cited sentences.
- **answers citing gold**: share of answers with at least one citation of the gold record.
- **relevant fraction** and **supported fraction**: the means of the answer's own
  :class:`~medgraph.knowledge.citations.Verification` over answers with claims.
- **ROUGE-L**: F-measure of the longest common subsequence of lower-cased word tokens between the
  answer (markers and engine label removed) and the set's ``long_answer``, where it has one.

Each record is appended to ``--save`` as soon as it is made, so a run resumes where it stopped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.messages import HumanMessage

from medgraph.errors import MedgraphError
from medgraph.evals.records import iter_json_lines
from medgraph.evals.report import Column, EvalReport, mean
from medgraph.evals.runner import Record, SaveFile, run_items
from medgraph.knowledge.citations import strip_markers

if TYPE_CHECKING:
    from medgraph.graphs.assistant import AssistantContext
    from medgraph.graphs.state import Answer

TASK = "answers"
ROW = "answers"

COLUMNS = [
    Column("answers", "answers", "{:d}"),
    Column("cited_sentences", "cited sentences", "{:d}"),
    Column("gold_sentence_share", "cited sent. → gold"),
    Column("answers_citing_gold", "answers citing gold"),
    Column("relevant_fraction", "relevant"),
    Column("supported_fraction", "supported"),
    Column("rouge_l", "ROUGE-L"),
]


class AnswerQuestionFileError(MedgraphError):
    """A question file for ``eval answers`` is missing or malformed (names the file and line)."""


@dataclass(frozen=True)
class OpenQuestion:
    """A question, the id of its gold record (if known) and a reference long answer (if any)."""

    id: str
    question: str
    gold_source: str | None = None
    long_answer: str | None = None


def _identifier(record: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = record.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def read_open_questions(path: Path | str) -> list[OpenQuestion]:
    """Questions from JSON lines: ``question``; optional ``pmid`` (or ``source_id``: the gold
    record), ``id`` and ``long_answer``."""
    path = Path(path)
    questions: list[OpenQuestion] = []
    seen: dict[str, int] = {}
    for number, record in iter_json_lines(path, AnswerQuestionFileError, "question file"):
        where = f"{path} line {number}"
        text = record.get("question")
        if not isinstance(text, str) or not text.strip():
            raise AnswerQuestionFileError(f"{where}: 'question' must be a non-empty string")
        gold = _identifier(record, "pmid", "source_id")
        item_id = _identifier(record, "id", "pmid") or f"line-{number}"
        if item_id in seen:
            raise AnswerQuestionFileError(
                f"{where}: id {item_id!r} repeats line {seen[item_id]}; every question needs its "
                "own id"
            )
        seen[item_id] = number
        long_answer = record.get("long_answer")
        questions.append(
            OpenQuestion(
                id=item_id,
                question=text.strip(),
                gold_source=gold,
                long_answer=long_answer.strip() if isinstance(long_answer, str) else None,
            )
        )
    if not questions:
        raise AnswerQuestionFileError(f"question file {path} holds no questions")
    return questions


_WORD = re.compile(r"[^\W_]+")
_PMID_PREFIX = re.compile(r"^pmid:\s*", re.IGNORECASE)


def same_record(source_id: str, gold: str) -> bool:
    """Whether a cited ``source_id`` names the ``gold`` record ("PMID:123" and "123" agree)."""
    return _PMID_PREFIX.sub("", source_id.strip()) == _PMID_PREFIX.sub("", gold.strip())


def _gold_sentences(record: Record) -> int:
    gold = record.get("gold")
    if not gold:
        return 0
    return sum(any(same_record(s, gold) for s in item["sources"]) for item in record["sentences"])


def _cites_gold(record: Record) -> bool:
    return _gold_sentences(record) > 0


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (beta = 1) over lower-cased word tokens; 0.0 when either side has none."""
    a = _WORD.findall(candidate.lower())
    b = _WORD.findall(reference.lower())
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[-1]))
        previous = current
    common = previous[-1]
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def score_answer(answer: Answer, question: OpenQuestion) -> Record:
    """The per-question record: cited sentences, which cite the gold record, and the scores."""
    from medgraph.agents.extractive import EXTRACTIVE_LABEL

    source_of = {citation.n: citation.source_id for citation in answer.citations}
    sentences = [
        {
            "sentence": check.sentence,
            "sources": [source_of[n] for n in check.citations if n in source_of],
            "supported": check.supported,
            "relevant": check.relevant,
        }
        for check in answer.verification.sentences
        if check.citations
    ]
    claims = [c for c in answer.verification.sentences if c.method != "no-claim"]
    text = strip_markers(answer.text.replace(EXTRACTIVE_LABEL, "")).strip()
    record: Record = {
        "task": TASK,
        "id": question.id,
        "question": question.question,
        "gold": question.gold_source,
        "kind": answer.kind,
        "answer": answer.text,
        "sentences": sentences,
        "cited_sentences": len(sentences),
        "claims": len(claims),
        "relevant_fraction": answer.verification.relevant_fraction if claims else None,
        "supported_fraction": answer.verification.supported_fraction if claims else None,
        "rouge_l": rouge_l(text, question.long_answer) if question.long_answer else None,
    }
    return {**record, "gold_sentences": _gold_sentences(record), "cites_gold": _cites_gold(record)}


def summarise(records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    """One row: micro gold share of cited sentences, and means over answers.

    Gold matches are recomputed from each record's cited sources, so a save file is always
    summarised by the current rules.
    """
    with_gold = [r for r in records if r.get("gold")]
    cited = sum(int(r["cited_sentences"]) for r in with_gold)
    gold_sentences = sum(_gold_sentences(r) for r in with_gold)
    return {
        ROW: {
            "answers": len(records),
            "cited_sentences": cited,
            "gold_sentences": gold_sentences,
            "gold_sentence_share": gold_sentences / cited if cited else None,
            "answers_citing_gold": mean([float(_cites_gold(r)) for r in with_gold]),
            "relevant_fraction": mean(
                [float(r["relevant_fraction"]) for r in records if r["claims"]]
            ),
            "supported_fraction": mean(
                [float(r["supported_fraction"]) for r in records if r["claims"]]
            ),
            "rouge_l": mean([float(r["rouge_l"]) for r in records if r["rouge_l"] is not None]),
        }
    }


def evaluate_answers(
    parts: AssistantContext,
    questions: Sequence[OpenQuestion],
    *,
    source: str = "",
    save: Path | None = None,
    progress: bool = True,
) -> EvalReport:
    """Answer every question with the assistant graph over ``parts`` and score the answers."""
    from medgraph.graphs.assistant import compile_assistant_graph

    settings = parts.settings.model_copy(update={"clarify_ambiguous": False})
    graph = compile_assistant_graph(_with_settings(parts, settings))
    saved = SaveFile(save, TASK, parts.engine) if save is not None else None

    def work(question: OpenQuestion, previous: Record | None) -> Record:
        result = graph.invoke({"messages": [HumanMessage(question.question)]})
        return {**score_answer(result["answer"], question), "engine": parts.engine}

    result = run_items(
        questions,
        work,
        item_id=lambda question: question.id,
        is_complete=lambda record: True,
        save=saved,
        description="answers",
        progress=progress,
    )
    return EvalReport(
        task=TASK,
        source=source,
        engine=parts.engine,
        items=len(questions),
        resumed=result.resumed,
        columns=COLUMNS,
        rows=summarise(result.records),
        save=str(save) if save is not None else None,
    )


def _with_settings(parts: AssistantContext, settings: Any) -> AssistantContext:
    from dataclasses import replace

    return replace(parts, settings=settings)


__all__ = [
    "AnswerQuestionFileError",
    "OpenQuestion",
    "evaluate_answers",
    "read_open_questions",
    "rouge_l",
    "same_record",
    "score_answer",
    "summarise",
]
