"""Readers of evaluation inputs: PubMedQA and MedQA-style question files, and cited answers.

Every reader takes JSON lines and raises an error that names the file and the line of the first
malformed record, so a bad file never yields a half-read evaluation.

Accepted shapes (extra keys are ignored):

- PubMedQA (``../shared/data/pubmedqa/dev.jsonl``): ``question``, ``final_decision`` (``yes``,
  ``no`` or ``maybe``) and ``pmid`` (or ``id``). The pmid names the gold abstract.
- MedQA-style multiple choice (``../shared/data/medqa/sample.jsonl``): ``question``, ``options``
  (an object letter -> text, two or more options) and ``answer_idx`` (the gold letter; or else
  ``answer``, the text of the gold option). ``id`` is optional.
- Cited answers (``medgraph eval citations``): ``answer`` (text with ``[n]`` markers) and
  ``citations`` (a list of objects with ``n`` and ``passage`` or ``quote``) — the
  ``medgraph ask --json`` output and the ``--save`` records of ``eval pubmedqa`` both fit.
  ``id`` (else ``thread_id``) is optional.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgraph.errors import MedgraphError
from medgraph.knowledge.evaluation import QuestionFileError

YES_NO_MAYBE = ("yes", "no", "maybe")


class AnswerFileError(MedgraphError):
    """An answers file for ``eval citations`` is missing or malformed (names the file and line)."""


@dataclass(frozen=True)
class YesNoQuestion:
    """A PubMedQA question: its text, gold label and the pmid of its gold abstract."""

    id: str
    question: str
    gold: str
    source_id: str | None = None
    line: int = 0


@dataclass(frozen=True)
class ChoiceQuestion:
    """A multiple-choice question: text, options by letter and the gold letter."""

    id: str
    question: str
    options: dict[str, str]
    gold: str
    line: int = 0


@dataclass(frozen=True)
class CitedAnswer:
    """An answer with ``[n]`` markers and the passage text behind each citation number."""

    id: str
    text: str
    passages: dict[int, str] = field(default_factory=dict)
    line: int = 0


def iter_json_lines(
    path: Path, error: type[MedgraphError], kind: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of ``path``; bad lines raise ``error``."""
    try:
        # split on newlines only: str.splitlines() also breaks at U+2028, which JSON may contain
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise error(f"{kind} {path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{kind} {path} is a folder; give a JSON-lines file") from None
    except (OSError, UnicodeDecodeError) as problem:
        raise error(f"{kind} {path} cannot be read: {problem}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as problem:
            raise error(f"{path} line {number}: not valid JSON ({problem.msg})") from None
        if not isinstance(record, dict):
            raise error(
                f"{path} line {number}: expected a JSON object, got {type(record).__name__}"
            )
        yield number, record


def _text(record: Mapping[str, Any], key: str, where: str, error: type[MedgraphError]) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise error(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def _optional_id(record: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = record.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def _content_id(*parts: str) -> str:
    """A stable id from the question's content (so resuming survives reordering the file)."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()
    return f"q-{digest[:12]}"


def _check_unique(ids: dict[str, int], item_id: str, where: str, number: int) -> None:
    if item_id in ids:
        raise QuestionFileError(
            f"{where}: id {item_id!r} repeats line {ids[item_id]}; every question needs its own id"
        )
    ids[item_id] = number


def _finish(path: Path, items: list[Any]) -> None:
    if not items:
        raise QuestionFileError(f"question file {path} holds no questions")


def read_pubmedqa(path: Path | str) -> list[YesNoQuestion]:
    """PubMedQA questions from JSON lines (``question``, ``final_decision``, ``pmid``/``id``)."""
    path = Path(path)
    questions: list[YesNoQuestion] = []
    seen: dict[str, int] = {}
    for number, record in iter_json_lines(path, QuestionFileError, "question file"):
        where = f"{path} line {number}"
        question = _text(record, "question", where, QuestionFileError)
        gold = record.get("final_decision")
        if not isinstance(gold, str) or gold.strip().lower() not in YES_NO_MAYBE:
            raise QuestionFileError(
                f"{where}: 'final_decision' must be one of yes, no, maybe (got {gold!r})"
            )
        pmid = _optional_id(record, "pmid")
        item_id = _optional_id(record, "id", "pmid") or _content_id(question)
        _check_unique(seen, item_id, where, number)
        questions.append(YesNoQuestion(item_id, question, gold.strip().lower(), pmid, number))
    _finish(path, questions)
    return questions


def _options(record: Mapping[str, Any], where: str) -> dict[str, str]:
    options = record.get("options")
    if not isinstance(options, dict) or len(options) < 2:
        raise QuestionFileError(
            f"{where}: 'options' must be an object of two or more options, letter -> text"
        )
    cleaned: dict[str, str] = {}
    for letter, text in options.items():
        key = str(letter).strip()
        if not key or len(key) > 3 or not isinstance(text, str) or not text.strip():
            raise QuestionFileError(
                f"{where}: option {letter!r} needs a short label (A, B, ...) and non-empty text"
            )
        cleaned[key] = text.strip()
    return dict(sorted(cleaned.items()))


def read_mcq(path: Path | str) -> list[ChoiceQuestion]:
    """MedQA-style questions from JSON lines (``question``, ``options``, ``answer_idx``)."""
    path = Path(path)
    questions: list[ChoiceQuestion] = []
    seen: dict[str, int] = {}
    for number, record in iter_json_lines(path, QuestionFileError, "question file"):
        where = f"{path} line {number}"
        question = _text(record, "question", where, QuestionFileError)
        options = _options(record, where)
        gold = _optional_id(record, "answer_idx")
        if gold is None:
            answer = record.get("answer")
            matches = [letter for letter, text in options.items() if text == answer]
            gold = matches[0] if len(matches) == 1 else None
        if gold not in options:
            raise QuestionFileError(
                f"{where}: 'answer_idx' must be one of the option letters "
                f"{', '.join(options)} (got {record.get('answer_idx')!r})"
            )
        item_id = _optional_id(record, "id") or _content_id(question, *options.values())
        _check_unique(seen, item_id, where, number)
        questions.append(ChoiceQuestion(item_id, question, options, gold, number))
    _finish(path, questions)
    return questions


def _quoted(citation: Mapping[str, Any]) -> str:
    """Every quoted passage of a per-record citation (``ask --json``), joined; else ""."""
    passages = citation.get("passages")
    if not isinstance(passages, list):
        return ""
    quotes = [
        p["quote"] for p in passages if isinstance(p, dict) and isinstance(p.get("quote"), str)
    ]
    return "\n\n".join(q.strip() for q in quotes if q.strip())


def _passages(record: Mapping[str, Any], where: str) -> dict[int, str]:
    citations = record.get("citations", [])
    if not isinstance(citations, list):
        raise AnswerFileError(f"{where}: 'citations' must be a list")
    passages: dict[int, str] = {}
    for position, citation in enumerate(citations, start=1):
        number = citation.get("n") if isinstance(citation, dict) else None
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise AnswerFileError(
                f"{where}: citation {position} needs 'n', the positive number its [n] marker uses"
            )
        text = citation.get("passage") or _quoted(citation) or citation.get("quote")
        if not isinstance(text, str) or not text.strip():
            raise AnswerFileError(
                f"{where}: citation [{number}] needs the cited text in 'passage' or 'quote'"
            )
        passages.setdefault(number, text.strip())
    return passages


def read_answers(path: Path | str) -> list[CitedAnswer]:
    """Cited answers from JSON lines (``answer`` with ``[n]`` markers, ``citations``)."""
    path = Path(path)
    answers: list[CitedAnswer] = []
    seen: dict[str, int] = {}
    for number, record in iter_json_lines(path, AnswerFileError, "answers file"):
        where = f"{path} line {number}"
        text = record.get("answer")
        if not isinstance(text, str):
            raise AnswerFileError(
                f"{where}: 'answer' must be the answer text with [n] citation markers (the "
                "`medgraph ask --json` shape)"
            )
        item_id = _optional_id(record, "id", "thread_id") or f"line-{number}"
        if item_id in seen:
            raise AnswerFileError(
                f"{where}: id {item_id!r} repeats line {seen[item_id]}; every answer needs its "
                "own id"
            )
        seen[item_id] = number
        answers.append(CitedAnswer(item_id, text, _passages(record, where), number))
    if not answers:
        raise AnswerFileError(f"answers file {path} holds no answers")
    return answers


__all__ = [
    "YES_NO_MAYBE",
    "AnswerFileError",
    "ChoiceQuestion",
    "CitedAnswer",
    "QuestionFileError",
    "YesNoQuestion",
    "iter_json_lines",
    "read_answers",
    "read_mcq",
    "read_pubmedqa",
]
