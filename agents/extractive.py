"""The extractive engine (``--model none``): answers quoted verbatim from retrieved evidence.

No language model is involved. The most relevant sentences of the retrieved chunks are quoted word
for word, each citing the evidence it came from, so every claim is grounded by construction. Every
output that uses this engine carries :data:`EXTRACTIVE_LABEL`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medgraph.knowledge.chunking import split_sentences
from medgraph.knowledge.citations import DraftSentence, terms_with_numbers
from medgraph.knowledge.types import Evidence
from medgraph.knowledge.verification import Embed, is_claim

EXTRACTIVE_LABEL = "Extractive answer (no language model): sentences quoted from the cited sources."

RANK_BONUS = 0.05
"""Added to a sentence's relevance: ``RANK_BONUS / (1 + rank)`` for the evidence's list position."""
RELATIVE_FLOOR = 0.5
"""Sentences less relevant than this fraction of the best sentence's relevance are not quoted."""
DUPLICATE_OVERLAP = 0.7
"""Term-set Jaccard at or above which a sentence repeats one already chosen."""
DUPLICATE_COSINE = 0.95
"""Embedding cosine at or above which a sentence repeats one already chosen."""
PER_EVIDENCE_LIMIT = 2
"""At most this many sentences quote one evidence (one each first, then a second where room)."""

_MIN_WORDS = 4
_MIN_TERMS = 3
_MAX_WORDS = 120
_MIN_LETTER_SHARE = 0.5
# A section label at the start of a sentence ("RESULTS: ...", "Methods: ..."), trimmed off.
_LEADING_LABEL = re.compile(r"^(?:[A-Z][A-Za-z]*(?: [A-Z][A-Za-z]*){0,3}|[A-Z][A-Z &/-]+):\s+")
# A quotable sentence ends like one; anything else is a label or a fragment ("DESIGN/").
_SENTENCE_END = re.compile(r"[.!…][\"'”’)]*$")
_REFERENCE_MARKER = re.compile(r"\[\s*\d{1,3}(?:\s*[-–—,]\s*\d{1,3})*\s*\]")
# A short label ending in a colon ("Medical Subject Headings (MeSH): ", "Key words: ").
_SHORT_LABEL = re.compile(r"^[^:]{1,60}:\s+")
_TERM_LIST_MIN_ITEMS = 4
_TERM_MAX_WORDS = 4


def _is_term_list(sentence: str) -> bool:
    """A keyword or MeSH line: four or more comma-separated short terms and no figures.

    "mammography screening, telephone counseling, tailored print communications, barriers." is a
    list of index terms, not a claim; "Age, sex and BMI were associated with ..." is not (its
    last item is a clause).
    """
    body = _SHORT_LABEL.sub("", sentence).rstrip(".!… ")
    items = [item.strip() for item in re.split(r",|;", body)]
    if len(items) < _TERM_LIST_MIN_ITEMS or any(ch.isdigit() for ch in body):
        return False
    return all(0 < len(item.split()) <= _TERM_MAX_WORDS for item in items)


@dataclass(frozen=True)
class _Candidate:
    rank: int
    number: int
    text: str
    terms: frozenset[str]


def _quotable(sentence: str) -> str | None:
    """The sentence with a leading section label trimmed, or ``None`` if it is boilerplate.

    Boilerplate: headings and labels, keyword and MeSH lines, questions and other non-claims, text
    that does not end like a sentence, fragments of fewer than four words or three content terms,
    run-ons, tables (under half letters), and text holding ``[n]``-style reference markers that
    would read as our own citations.
    """
    label = _LEADING_LABEL.match(sentence)
    if label is not None:
        sentence = sentence[label.end() :]
    if sentence.lstrip().startswith(("#", "|")) or _REFERENCE_MARKER.search(sentence):
        return None
    if not _SENTENCE_END.search(sentence) or _is_term_list(sentence):
        return None
    words = sentence.split()
    if not _MIN_WORDS <= len(words) <= _MAX_WORDS:
        return None
    letters = sum(character.isalpha() for character in sentence)
    if letters < _MIN_LETTER_SHARE * len(sentence.replace(" ", "")):
        return None
    if len(terms_with_numbers(sentence)) < _MIN_TERMS or not is_claim(sentence):
        return None
    return sentence


def _candidates(evidence: Sequence[Evidence]) -> list[_Candidate]:
    candidates: list[_Candidate] = []
    for rank, item in enumerate(evidence):
        if item.number is None:
            raise ValueError(
                f"evidence {rank} ({item.source_id}) has no citation number; number the evidence "
                "(Evidence.with_number) before building an answer from it"
            )
        text = item.chunk.text
        for start, end in split_sentences(text):
            quote = _quotable(text[start:end])
            if quote is not None:
                candidates.append(
                    _Candidate(rank, item.number, quote, frozenset(terms_with_numbers(quote)))
                )
    return candidates


def _lexical_relevance(question: str, candidates: Sequence[_Candidate]) -> list[float]:
    """Set cosine between the question's terms and each sentence's: shared / sqrt(|Q| |S|)."""
    question_terms = terms_with_numbers(question)
    if not question_terms:
        return [0.0] * len(candidates)
    return [
        len(question_terms & c.terms) / math.sqrt(len(question_terms) * len(c.terms))
        for c in candidates
    ]


def _unit_vectors(
    embed: Embed, question: str, candidates: Sequence[_Candidate]
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of the question and of each candidate (one embed call, each text once)."""
    texts = list(dict.fromkeys([question, *(c.text for c in candidates)]))
    matrix = np.asarray(embed(texts), dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != len(texts):
        raise ValueError(
            f"the embed function returned an array of shape {matrix.shape} for {len(texts)} "
            "texts; it must return one vector per text, shape (len(texts), dimension)"
        )
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    matrix = matrix / norms
    row = {text: index for index, text in enumerate(texts)}
    return matrix[row[question]], matrix[[row[c.text] for c in candidates]]


def _is_duplicate(
    index: int,
    chosen: Sequence[int],
    candidates: Sequence[_Candidate],
    vectors: np.ndarray | None,
) -> bool:
    candidate = candidates[index]
    for other_index in chosen:
        other = candidates[other_index]
        if candidate.text == other.text:
            return True
        union = candidate.terms | other.terms
        if union and len(candidate.terms & other.terms) / len(union) >= DUPLICATE_OVERLAP:
            return True
        if vectors is not None and float(vectors[index] @ vectors[other_index]) >= (
            DUPLICATE_COSINE
        ):
            return True
    return False


def extractive_answer(
    question: str,
    evidence: Sequence[Evidence],
    *,
    max_sentences: int = 4,
    embed: Embed | None = None,
) -> list[DraftSentence]:
    """Quote the evidence sentences most relevant to ``question``, each citing its evidence.

    Sentences come from each ``Evidence.chunk.text`` (split with
    :func:`~medgraph.knowledge.chunking.split_sentences`; a leading section label is trimmed, so
    every returned text is a verbatim substring of its chunk). Relevance is the cosine between
    the question and the sentence when ``embed`` is given, else the set cosine of their content
    terms; ``RANK_BONUS / (1 + rank)`` favours evidence earlier in the list (the retrieval
    order). Sentences below ``RELATIVE_FLOOR`` of the best relevance, boilerplate and
    near-duplicates are skipped; each evidence gets one sentence before any gets a second, and
    none more than ``PER_EVIDENCE_LIMIT``. Sentences come back most relevant first.
    No evidence (or nothing quotable) gives ``[]``: this engine never writes text of its own.
    """
    if max_sentences < 1:
        raise ValueError(f"max_sentences must be 1 or more, got {max_sentences!r}")
    candidates = _candidates(evidence)
    if not candidates:
        return []
    vectors: np.ndarray | None = None
    if embed is not None:
        question_vector, vectors = _unit_vectors(embed, question, candidates)
        relevance = [max(0.0, float(value)) for value in vectors @ question_vector]
    else:
        relevance = _lexical_relevance(question, candidates)
    floor = RELATIVE_FLOOR * max(relevance)
    order = sorted(
        (index for index in range(len(candidates)) if relevance[index] >= floor),
        key=lambda index: (-(relevance[index] + RANK_BONUS / (1 + candidates[index].rank)), index),
    )
    chosen: list[int] = []
    per_evidence: dict[int, int] = {}
    for limit in range(1, PER_EVIDENCE_LIMIT + 1):
        for index in order:
            if len(chosen) >= max_sentences:
                break
            number = candidates[index].number
            if index in chosen or per_evidence.get(number, 0) >= limit:
                continue
            if _is_duplicate(index, chosen, candidates, vectors):
                continue
            chosen.append(index)
            per_evidence[number] = per_evidence.get(number, 0) + 1
    chosen.sort(key=order.index)
    return [
        DraftSentence(text=candidates[index].text, citations=[candidates[index].number])
        for index in chosen
    ]


__all__ = ["EXTRACTIVE_LABEL", "extractive_answer"]
