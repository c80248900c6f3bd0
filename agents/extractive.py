"""The extractive engine (``--model none``): answers quoted verbatim from retrieved evidence.

No language model is involved. The most relevant sentences of the retrieved chunks are quoted word
for word, each citing the evidence it came from, so every claim is grounded by construction. Every
output that uses this engine carries :data:`EXTRACTIVE_LABEL`.

Only findings are quoted, only from records about the question, and the evidence's own
conclusions lead:

- statements of aim, objective or method ("The aim of our study was to compare ...", sentences of
  OBJECTIVE or METHODS sections) are not findings and are never quoted; nor is any sentence of a
  record with a passage that carries instructions or markup (quarantined as a whole:
  :func:`~medgraph.knowledge.injection.usable_evidence`);
- a record is quoted only when its retrieved text holds at least
  :data:`~medgraph.knowledge.relevance.COVERAGE_FLOOR` of the question's key terms (an absolute
  floor) and its distinctive share is at least :data:`RECORD_RELATIVE_FLOOR` of the best
  record's (:func:`on_topic_records`); a sentence only
  when it shares a key term with the question or its embedding is close to the question's
  (:func:`~medgraph.knowledge.relevance.sentence_link`);
- sentences of CONCLUSIONS sections come first, then results, then the rest.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medgraph.knowledge.chunking import split_sentences
from medgraph.knowledge.citations import (
    DraftSentence,
    content_terms,
    evidence_by_number,
    record_numbering,
    terms_with_numbers,
)
from medgraph.knowledge.conflicts import Statement, find_conflicts
from medgraph.knowledge.injection import is_instruction_text, usable_evidence
from medgraph.knowledge.relevance import (
    COVERAGE_FLOOR,
    distinctive_coverage,
    key_coverage,
    key_terms,
    matched_terms,
    sentence_link,
)
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
RECORD_RELATIVE_FLOOR = 0.7
"""A record's distinctive key-term share must reach this fraction of the best record's."""

SentenceKind = Literal["conclusion", "finding", "other"]
_KIND_ORDER: dict[str, int] = {"conclusion": 0, "finding": 1, "other": 2}
_LABEL_WORD = re.compile(r"[A-Za-z]+")
_CONCLUSION_LABELS = frozenset({"CONCLUSION", "CONCLUSIONS", "INTERPRETATION", "IMPLICATIONS"})
_FINDING_LABELS = frozenset({"RESULT", "RESULTS", "FINDING", "FINDINGS", "DISCUSSION"})
_NON_FINDING_LABELS = frozenset(
    {
        "OBJECTIVE", "OBJECTIVES", "AIM", "AIMS", "PURPOSE", "METHOD", "METHODS", "MATERIAL",
        "MATERIALS", "DESIGN", "SETTING", "SETTINGS", "PARTICIPANTS", "PATIENTS", "SUBJECTS",
        "INTERVENTION", "INTERVENTIONS", "MEASUREMENTS", "MEASURE", "MEASURES", "METHODOLOGY",
    }
)  # fmt: skip
# Statements of aim, objective or method: what a study set out to do, not what it found.
_AIM_OR_METHOD = re.compile(
    r"^(?:"
    r"(?:the |our |this |a )?(?:main |primary |principal |overall |specific )?"
    r"(?:aims?|objectives?|purposes?|goals?|intent(?:ion)?|focus)\s+(?:of|was|were|is|are|here)\b"
    r"|(?:we|the authors|(?:this|the|our) (?:present |current )?(?:study|paper|report|article"
    r"|review|trial|work|investigation|analysis|survey))\s+(?:\w+\s+)?(?:aim\w*|sought|seeks"
    r"|set out|investigat\w*|examin\w*|evaluat\w*|assess\w*|compar\w*|studied|stud(?:y|ies)"
    r"|analy[sz]\w*|review\w*|describ\w*|explor\w*|test\w*|determin\w*|conduct\w*|perform\w*"
    r"|enroll\w*|recruit\w*|includ\w*|hypothesi[sz]\w*|design\w*|measur\w*|collect\w*"
    r"|identif\w*|us(?:e|ed)|was (?:designed|undertaken|conducted|performed))\b"
    r"|to (?:determine|assess|evaluate|investigate|examine|compare|test|identify|describe"
    r"|explore|establish|characteri[sz]e|clarify|analy[sz]e|measure|quantify|review|report"
    r"|ascertain|verify|validate)\b"
    r"|(?:data|records|charts|patients|participants|subjects) (?:were|was) (?:collected"
    r"|reviewed|retrieved|obtained|recruited|enrolled|randomi[sz]ed|included|analy[sz]ed)\b"
    r")",
    re.IGNORECASE,
)

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


def section_kind(section: str | None) -> SentenceKind | None:
    """What a section label says about its sentences; ``None`` for aim, objective or method.

    "CONCLUSIONS" -> conclusion, "RESULTS" -> finding, "METHODS" or "OBJECTIVE" -> None,
    "BACKGROUND" or no label -> other. A label naming both ("METHODS AND RESULTS") counts as
    its finding part.
    """
    words = {word.upper() for word in _LABEL_WORD.findall(section or "")}
    if words & _CONCLUSION_LABELS:
        return "conclusion"
    if words & _FINDING_LABELS:
        return "finding"
    if words & _NON_FINDING_LABELS and not words & {"BACKGROUND", "INTRODUCTION", "CONTEXT"}:
        return None
    return "other"


def is_aim_or_method(sentence: str) -> bool:
    """Whether ``sentence`` states what a study set out to do or how, rather than a finding.

    "The aim of our study was to compare ...", "We retrospectively reviewed ...", "To determine
    whether ...": such sentences are never quoted as answers.
    """
    return _AIM_OR_METHOD.match(sentence.strip().lstrip("\"'“‘(")) is not None


@dataclass(frozen=True)
class _Candidate:
    rank: int
    number: int
    source: str
    kind: SentenceKind
    text: str
    terms: frozenset[str]


def _quotable(sentence: str) -> str | None:
    """The sentence with a leading section label trimmed, or ``None`` if it is boilerplate.

    Boilerplate: headings and labels, keyword and MeSH lines, questions and other non-claims, text
    that does not end like a sentence, fragments of fewer than four words or three content terms,
    run-ons, tables (under half letters), text holding ``[n]``-style reference markers that
    would read as our own citations, statements of aim or method (:func:`is_aim_or_method`), and
    text carrying instructions or markup.
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
    if is_instruction_text(sentence) or is_aim_or_method(sentence):
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
        kind = section_kind(item.chunk.section)
        if kind is None:
            continue
        text = item.chunk.text
        for start, end in split_sentences(text):
            quote = _quotable(text[start:end])
            if quote is not None:
                candidates.append(
                    _Candidate(
                        rank, item.number, item.source_id, kind, quote,
                        frozenset(terms_with_numbers(quote)),
                    )
                )  # fmt: skip
    return candidates


def _record_terms(evidence: Sequence[Evidence]) -> dict[str, set[str]]:
    terms: dict[str, set[str]] = {}
    for item in evidence:
        found = terms.setdefault(item.source_id, set())
        found |= content_terms(item.chunk.text)
        if item.document.title:
            found |= content_terms(item.document.title)
    return terms


def record_coverage(question: str, evidence: Sequence[Evidence]) -> dict[str, float]:
    """Per record: the share of the question's key terms its retrieved passages hold together."""
    keys = key_terms(question)
    return {
        source: key_coverage(keys, [" ".join(terms)]) if keys else 1.0
        for source, terms in _record_terms(evidence).items()
    }


def on_topic_records(question: str, evidence: Sequence[Evidence]) -> set[str]:
    """Records about the question.

    A record's retrieved passages must hold at least
    :data:`~medgraph.knowledge.relevance.COVERAGE_FLOOR` of the question's key terms (an absolute
    floor), and its distinctive share (:func:`~medgraph.knowledge.relevance.distinctive_coverage`:
    key terms weighted by how few retrieved records hold them) must reach
    :data:`RECORD_RELATIVE_FLOOR` of the best record's.
    """
    keys = key_terms(question)
    terms = _record_terms(evidence)
    if not terms:
        return set()
    distinctive = distinctive_coverage(keys, terms)
    best = max(distinctive.values())
    return {
        source
        for source, found in terms.items()
        if (not keys or len(matched_terms(keys, found)) / len(keys) >= COVERAGE_FLOOR)
        and distinctive[source] >= RECORD_RELATIVE_FLOOR * best
    }


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
    every returned text is a verbatim substring of its chunk), only from records about the
    question (:func:`on_topic_records`), never from aim, objective or method sections and never
    from a record with a passage that carries instructions or markup (left out first).
    A sentence must be linked to the question (a shared key term, or an embedding cosine at the
    floor). Relevance is the cosine between the question and the sentence when ``embed`` is
    given, else the set cosine of their content terms; ``RANK_BONUS / (1 + rank)`` favours
    evidence earlier in the list (the retrieval order). Sentences below ``RELATIVE_FLOOR`` of the
    best relevance, boilerplate and near-duplicates are skipped; each evidence gets one sentence
    before any gets a second, and none more than ``PER_EVIDENCE_LIMIT``. Conclusions come first,
    then results, then the rest, each most relevant first.
    No evidence (or nothing quotable) gives ``[]``: this engine never writes text of its own.
    """
    if max_sentences < 1:
        raise ValueError(f"max_sentences must be 1 or more, got {max_sentences!r}")
    evidence = usable_evidence(evidence)
    on_topic = on_topic_records(question, evidence)
    candidates = [c for c in _candidates(evidence) if c.source in on_topic]
    if not candidates:
        return []
    vectors: np.ndarray | None = None
    cosines: list[float | None] = [None] * len(candidates)
    relevance: list[float]
    if embed is not None:
        question_vector, vectors = _unit_vectors(embed, question, candidates)
        relevance = [float(value) for value in vectors @ question_vector]
        cosines = list(relevance)
        relevance = [max(0.0, value) for value in relevance]
    else:
        relevance = _lexical_relevance(question, candidates)
    keys = key_terms(question)
    linked = [
        sentence_link(keys, c.text, cosine) for c, cosine in zip(candidates, cosines, strict=True)
    ]
    if not any(linked):
        return []
    floor = RELATIVE_FLOOR * max(r for r, ok in zip(relevance, linked, strict=True) if ok)
    order = sorted(
        (index for index in range(len(candidates)) if linked[index] and relevance[index] >= floor),
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
    chosen.sort(key=lambda index: (_KIND_ORDER[candidates[index].kind], order.index(index)))
    return [
        DraftSentence(text=candidates[index].text, citations=[candidates[index].number])
        for index in chosen
    ]


# A yes/no question ("Does X ...?", "X: is it safe?") or a comparison ("X versus Y").
_CLOSED_QUESTION = re.compile(
    r"(?:^|[:;,]\s*)(?:is|are|was|were|do|does|did|can|could|should|would|will|has|have|had|may"
    r"|might|must)\b|\b(?:versus|vs\.?|compared (?:with|to)|better than|worse than|superior to)\b",
    re.IGNORECASE,
)


def is_closed_question(question: str) -> bool:
    """Whether ``question`` asks yes/no ("Does X ...?") or compares ("X versus Y")."""
    return _CLOSED_QUESTION.search(question.strip()) is not None


def answer_notes(
    question: str, sentences: Sequence[DraftSentence], evidence: Sequence[Evidence]
) -> list[str]:
    """Notes under an extractive answer to a yes/no or comparative question.

    ``sentences`` cite passage numbers of ``evidence``; the notes cite records as the final
    answer numbers them (:func:`~medgraph.knowledge.citations.record_numbering`). One note per
    conflict between cited records (:func:`~medgraph.knowledge.conflicts.find_conflicts`), and
    a thin-evidence note when a single record is cited. Other questions get no notes.
    """
    if not is_closed_question(question):
        return []
    known = evidence_by_number(evidence)
    mapping = record_numbering(sentences, evidence)
    statements = [
        Statement(text=s.text, source=known[n].source_id, number=mapping[n])
        for s in sentences
        for n in s.citations[:1]
        if n in known
    ]
    notes = [
        f"Note: the cited records disagree — [{c.first.number}] and [{c.second.number}] report "
        f"opposite findings on {c.outcome or 'the same outcome'}."
        for c in find_conflicts(statements)
    ]
    records = sorted(set(mapping.values()))
    if len(records) == 1:
        notes.append(f"Note: thin evidence — a single record [{records[0]}] supports this answer.")
    return notes


__all__ = [
    "EXTRACTIVE_LABEL",
    "SentenceKind",
    "answer_notes",
    "extractive_answer",
    "is_aim_or_method",
    "is_closed_question",
    "on_topic_records",
    "record_coverage",
    "section_kind",
]
