"""Is a sentence, or the record it quotes, about the question? Absolute floors, no language model.

A sentence can be well supported by what it cites and still be about another study: it shares
a word ("death", "leaves") with the question, but its record is about something else. Relevance
is judged on two levels, each against an absolute floor rather than only relative to the best
candidate:

- **key terms**: the question's content words with its framing left out ("does", "role",
  "effect", "associated", "patients", ...), see :func:`key_terms`. Terms match when their stems
  are equal or one is a prefix of the other and the shorter has at least five letters
  ("mitochondria" ~ "mitochondrial", "diabetes" ~ "diabetic").
- **topicality of the context** (:func:`key_coverage`): the share of key terms found in the
  sentence together with its record's text (the cited passages). A record of another study
  rarely holds most of a question's key terms. Among several retrieved records,
  :func:`distinctive_coverage` weighs each key term by how few records hold it: a term every
  record holds ("hospital") says nothing about which one is on the question, a term only one
  holds ("weekend") says much.
- **link of the sentence** (:func:`sentence_link`): the sentence itself shares a key term with
  the question, or its embedding cosine with the question reaches :data:`SENTENCE_COSINE_FLOOR`.

:func:`relevance_scores` combines them into one score in [0, 1] per (sentence, passages).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from medgraph.knowledge.citations import content_terms, stem

COVERAGE_FLOOR = 0.4
"""A sentence's context (sentence + its record's passages) must hold at least this share of the
question's key terms."""
SENTENCE_COSINE_FLOOR = 0.45
"""A sentence sharing no key term with the question is linked to it at or above this cosine."""
_PREFIX_MIN = 5

# Words that frame a question or describe a study rather than name its subject.
_FRAMING_TEXT = """
    do does did is are was were can could should would will may might has have had be been
    role roles play plays played effect effects effective effectiveness efficacy efficacious
    impact impacts affect affects influence influences association associated associate
    relationship relation related relate link linked correlate correlated correlation predict
    predicts predictor predictors predictive factor factors outcome outcomes result results
    study studies patient patients people person subject subjects case cases there any
    what which who how why when where whether known know new use used using useful usefulness
    value valuable benefit beneficial better worse improve improves improved increase increases
    increased decrease decreases decreased reduce reduces reduced risk risks evidence
    important importance really truly actually still necessary need needed possible
    help helps contribute contributes change changes versus compared comparison difference
"""
FRAMING_TERMS = frozenset(stem(word) for word in _FRAMING_TEXT.split())
"""Stems of framing words: they do not name what a question is about."""


def key_terms(question: str) -> set[str]:
    """The stemmed content words of ``question`` that name its subject (framing left out).

    Falls back to all content words when the question is framing only.
    """
    terms = content_terms(question)
    return (terms - FRAMING_TERMS) or terms


def _matches(term: str, terms: set[str]) -> bool:
    if term in terms:
        return True
    if len(term) < _PREFIX_MIN:
        return False
    return any(
        len(other) >= _PREFIX_MIN and (other.startswith(term) or term.startswith(other))
        for other in terms
    )


def matched_terms(keys: Iterable[str], terms: set[str]) -> set[str]:
    """The ``keys`` found in ``terms`` (equal stems, or a prefix of five letters or more)."""
    return {key for key in keys if _matches(key, terms)}


def key_coverage(keys: set[str], texts: Sequence[str]) -> float:
    """Share of ``keys`` found in the ``texts`` together (1.0 when there are no keys)."""
    if not keys:
        return 1.0
    terms: set[str] = set()
    for text in texts:
        terms |= content_terms(text)
    return len(matched_terms(keys, terms)) / len(keys)


def distinctive_coverage(keys: set[str], records: Mapping[str, set[str]]) -> dict[str, float]:
    """Per record, the share of key terms it holds, each term weighted ``log(1 + R / df)``.

    ``records`` maps each record to its content terms; ``R`` is the number of records and ``df``
    the number of them holding the term. With no keys every record gets 1.0.
    """
    if not keys:
        return dict.fromkeys(records, 1.0)
    found = {record: matched_terms(keys, terms) for record, terms in records.items()}
    count = len(records)
    weight = {
        key: math.log(1 + count / max(1, sum(key in hits for hits in found.values())))
        for key in keys
    }
    total = sum(weight.values())
    return {record: sum(weight[k] for k in hits) / total for record, hits in found.items()}


def sentence_link(keys: set[str], sentence: str, cosine: float | None) -> bool:
    """The sentence shares a key term with the question, or is close to it in embedding space."""
    if not keys or matched_terms(keys, content_terms(sentence)):
        return True
    return cosine is not None and cosine >= SENTENCE_COSINE_FLOOR


def relevance_score(
    question: str, sentence: str, passages: Sequence[str], cosine: float | None = None
) -> float:
    """How much ``sentence`` (with the ``passages`` it cites) is about ``question``, in [0, 1].

    With ``K`` the question's key terms::

        coverage = share of K found in the sentence and its passages together
        score    = coverage      when the sentence is linked to the question
                                 (shares a key term, or cosine >= SENTENCE_COSINE_FLOOR)
        score    = 0             otherwise

    A sentence is relevant when its score reaches :data:`COVERAGE_FLOOR`.
    """
    keys = key_terms(question)
    if not sentence_link(keys, sentence, cosine):
        return 0.0
    return key_coverage(keys, [sentence, *passages])


__all__ = [
    "COVERAGE_FLOOR",
    "FRAMING_TERMS",
    "SENTENCE_COSINE_FLOOR",
    "distinctive_coverage",
    "key_coverage",
    "key_terms",
    "matched_terms",
    "relevance_score",
    "sentence_link",
]
