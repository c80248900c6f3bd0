"""Retrieval evaluation: labelled questions in, hit@1, hit@k, recall@k, MRR@10 and latency out.

Metrics are computed over *documents*: a search returns chunks, and the ranking scored here is the
list of distinct source ids in the order their first chunk appears. A question file is JSON lines
with ``question`` and either ``gold_ids`` (a list of source ids) or ``pmid`` (one PubMed id).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from medgraph.errors import MedgraphError

MRR_DEPTH = 10


class QuestionFileError(MedgraphError):
    """A question file is missing or malformed (the message names the file and line)."""


@dataclass(frozen=True)
class RetrievalQuestion:
    """One labelled question: the text and the source ids that answer it."""

    question: str
    gold_ids: tuple[str, ...]
    line: int = 0


def load_questions(path: Path | str) -> list[RetrievalQuestion]:
    """Read a JSON-lines question file; any malformed line raises naming its line number."""
    path = Path(path)
    try:
        # split on newlines only: str.splitlines() also breaks at U+2028 and friends, which JSON
        # strings may contain unescaped
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise QuestionFileError(f"question file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise QuestionFileError(f"question file {path} cannot be read: {error}") from None
    questions: list[RetrievalQuestion] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise QuestionFileError(f"{where}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise QuestionFileError(f"{where}: expected a JSON object, got {type(record).__name__}")
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            raise QuestionFileError(f"{where}: 'question' must be a non-empty string")
        questions.append(RetrievalQuestion(question.strip(), _gold_ids(record, where), number))
    if not questions:
        raise QuestionFileError(f"question file {path} holds no questions")
    return questions


def _gold_ids(record: Mapping[str, Any], where: str) -> tuple[str, ...]:
    if "gold_ids" in record:
        gold = record["gold_ids"]
        if (
            not isinstance(gold, list)
            or not gold
            or not all(isinstance(item, (str, int)) and not isinstance(item, bool) for item in gold)
        ):
            raise QuestionFileError(f"{where}: 'gold_ids' must be a non-empty list of ids")
        return tuple(str(item).strip() for item in gold)
    pmid = record.get("pmid")
    if isinstance(pmid, (str, int)) and not isinstance(pmid, bool) and str(pmid).strip():
        return (str(pmid).strip(),)
    raise QuestionFileError(f"{where}: needs 'gold_ids' (a list of source ids) or 'pmid'")


def distinct_in_order(ids: Iterable[str]) -> list[str]:
    """``ids`` without repeats, keeping the first occurrence (chunk hits -> document ranking)."""
    seen: set[str] = set()
    ordered: list[str] = []
    for item in ids:
        if item not in seen:
            seen.add(item)
            ordered.append(item)
    return ordered


def hit_at(ranking: Sequence[str], gold: Iterable[str], k: int) -> float:
    """1.0 if any gold id is among the first ``k`` of ``ranking``, else 0.0."""
    wanted = set(gold)
    return 1.0 if any(item in wanted for item in ranking[:k]) else 0.0


def recall_at(ranking: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Share of the gold ids found among the first ``k`` of ``ranking``."""
    wanted = set(gold)
    if not wanted:
        raise ValueError("recall needs at least one gold id")
    return len(wanted.intersection(ranking[:k])) / len(wanted)


def reciprocal_rank(ranking: Sequence[str], gold: Iterable[str], k: int = MRR_DEPTH) -> float:
    """1 / rank of the first gold id within the first ``k`` of ``ranking`` (0.0 if none)."""
    wanted = set(gold)
    for position, item in enumerate(ranking[:k], start=1):
        if item in wanted:
            return 1.0 / position
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must lie in [0, 100], got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = math.ceil(position)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass(frozen=True)
class RetrievalMetrics:
    """Mean metrics of one retrieval mode over a question set."""

    mode: str
    questions: int
    k: int
    hit_at_1: float
    hit_at_k: float
    recall_at_k: float
    mrr_at_10: float
    latency_p50_ms: float
    latency_p95_ms: float

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return asdict(self)


def score_rankings(
    mode: str,
    rankings: Sequence[Sequence[str]],
    golds: Sequence[Sequence[str]],
    k: int,
    latencies_ms: Sequence[float] = (),
) -> RetrievalMetrics:
    """Average the metrics of document ``rankings`` against ``golds`` (aligned lists)."""
    if len(rankings) != len(golds):
        raise ValueError(f"{len(rankings)} rankings but {len(golds)} gold lists")
    if not rankings:
        raise ValueError("no rankings to score")
    count = len(rankings)

    def mean(metric: Callable[[Sequence[str], Sequence[str]], float]) -> float:
        return sum(metric(r, g) for r, g in zip(rankings, golds, strict=True)) / count

    return RetrievalMetrics(
        mode=mode,
        questions=count,
        k=k,
        hit_at_1=mean(lambda r, g: hit_at(r, g, 1)),
        hit_at_k=mean(lambda r, g: hit_at(r, g, k)),
        recall_at_k=mean(lambda r, g: recall_at(r, g, k)),
        mrr_at_10=mean(lambda r, g: reciprocal_rank(r, g, MRR_DEPTH)),
        latency_p50_ms=percentile(latencies_ms, 50) if latencies_ms else 0.0,
        latency_p95_ms=percentile(latencies_ms, 95) if latencies_ms else 0.0,
    )


class _Hit(Protocol):
    @property
    def source_id(self) -> str: ...


class Searchable(Protocol):
    """Anything with :meth:`LiteratureIndex.search`'s signature."""

    def search(self, query: str, k: int = ..., mode: str = ...) -> Sequence[_Hit]: ...


def search_rankings(
    index: Searchable, questions: Sequence[RetrievalQuestion], mode: str, depth: int = MRR_DEPTH
) -> tuple[list[list[str]], list[float]]:
    """The document ranking (``depth`` deep) and search time in ms of every question in ``mode``.

    Each search asks for ``3 * depth`` chunks so that ``depth`` distinct documents are usually
    ranked. One untimed warm-up search comes first (it loads the models).
    """
    index.search(questions[0].question, k=3 * depth, mode=mode)
    rankings: list[list[str]] = []
    latencies: list[float] = []
    for question in questions:
        started = time.perf_counter()
        hits = index.search(question.question, k=3 * depth, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
        rankings.append(distinct_in_order(hit.source_id for hit in hits)[:depth])
    return rankings, latencies


def evaluate_retrieval(
    index: Searchable,
    questions: Sequence[RetrievalQuestion],
    *,
    k: int = 10,
    modes: Sequence[str] = ("dense", "lexical", "hybrid"),
) -> dict[str, RetrievalMetrics]:
    """Search every question in every mode (see :func:`search_rankings`) and score the rankings.

    Rankings are ``max(k, 10)`` documents deep, as MRR needs depth 10.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    golds = [question.gold_ids for question in questions]
    results: dict[str, RetrievalMetrics] = {}
    for mode in modes:
        rankings, latencies = search_rankings(index, questions, mode, max(k, MRR_DEPTH))
        results[mode] = score_rankings(mode, rankings, golds, k, latencies)
    return results


__all__ = [
    "MRR_DEPTH",
    "QuestionFileError",
    "RetrievalMetrics",
    "RetrievalQuestion",
    "Searchable",
    "distinct_in_order",
    "evaluate_retrieval",
    "hit_at",
    "load_questions",
    "percentile",
    "recall_at",
    "reciprocal_rank",
    "score_rankings",
    "search_rankings",
]
