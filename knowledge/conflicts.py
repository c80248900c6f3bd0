"""Conflicting findings between records, found by rules on the sentences that state them.

Two statements from different records conflict when they report opposite directions of effect on
the same outcome:

- **increased / decreased** ("increased the risk of stroke" vs "reduced the risk of stroke"),
- **associated / not associated** ("was associated with dementia" vs "was not associated with
  dementia", "no association between ..."),
- **superior / not superior** ("was superior to placebo" vs "was not superior to placebo",
  "inferior to").

"Same outcome" means the words right after the direction word, up to where the population or
setting begins ("in", "among", a comma, ...), share a content term, and the two statements share
at least :data:`MIN_SHARED_TERMS` content terms in all.
The rules read direction words only; they do not weigh study quality or effect size. With a
language model, the research graph asks the model to judge conflicts instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from medgraph.knowledge.citations import content_terms, stem, strip_markers

Axis = Literal["direction", "association", "superiority"]
MIN_SHARED_TERMS = 2
"""Content terms (direction and framing words left out) two conflicting statements must share."""
_OUTCOME_WINDOW = 8

_NEGATION = (
    r"(?:not|no|nor|never|neither|without|failed to|did not|does not|do not|was not|were not)"
)
_INCREASE = re.compile(
    r"\b(increas(?:e|es|ed|ing)|rais(?:e|es|ed|ing)|elevat(?:e|es|ed|ing)|higher|greater"
    r"|improv(?:e|es|ed|ing))\b",
    re.I,
)
_DECREASE = re.compile(
    r"\b(decreas(?:e|es|ed|ing)|reduc(?:e|es|ed|ing|tion)|lower(?:s|ed|ing)?|diminish(?:es|ed)?"
    r"|declin(?:e|es|ed|ing)|impair(?:s|ed)?|worsen(?:s|ed)?)\b",
    re.I,
)
_ASSOCIATED = re.compile(
    r"\b(associated with|association (?:between|of|with)|correlated with|linked to"
    r"|predict(?:s|ed)?)\b",
    re.I,
)
_NOT_ASSOCIATED = re.compile(
    rf"\b(?:{_NEGATION}\s+(?:\w+\s+){{0,2}}(?:associated|correlated|linked|predict\w*)"
    r"|no (?:\w+\s+){0,2}(?:association|correlation|relationship|link)"
    r"|(?:unrelated|not related) to)\b",
    re.I,
)
_SUPERIOR = re.compile(r"\b(superior to|more effective than|outperform(?:s|ed)?)\b", re.I)
_NOT_SUPERIOR = re.compile(
    rf"\b(?:{_NEGATION}\s+(?:\w+\s+){{0,1}}(?:superior|more effective)|inferior to"
    r"|no more effective than|(?:equivalent|comparable|similar) to)\b",
    re.I,
)
_NEGATED_CHANGE = re.compile(
    rf"\b(?:{_NEGATION}\s+(?:\w+\s+){{0,2}}(?:increas|decreas|reduc|rais|elevat|improv|lower)\w*"
    r"|no (?:significant |statistically significant )?(?:change|difference|effect|increase"
    r"|decrease|reduction|improvement))\b",
    re.I,
)
# The outcome ends where the population or setting begins ("... of stroke in older adults").
_POPULATION_BREAK = re.compile(r"[,;:.()]|\b(?:in|among|for|during|after|before|when|than)\b", re.I)
_LEADING_FUNCTION_WORDS = frozenset({"with", "the", "of", "to", "in", "on", "for", "a", "an", "by"})
_DIRECTION_TEXT = """
    increase increased increases increasing raise raised elevated elevate higher greater improve
    improved improves improving decrease decreased decreases decreasing reduce reduced reduces
    reducing reduction lower lowered lowers diminished decline declined impaired worsened
    associated association correlated linked predicts predicted superior inferior effective
    significant significantly statistically no not study patients compared results showed found
    effect risk
"""
_DIRECTION_WORDS = frozenset(stem(word) for word in _DIRECTION_TEXT.split())


@dataclass(frozen=True)
class Statement:
    """A sentence stating a finding, its record (``source``) and that record's citation number."""

    text: str
    source: str
    number: int


@dataclass(frozen=True)
class Conflict:
    """Two statements of different records reporting opposite directions on one outcome."""

    first: Statement
    second: Statement
    axis: Axis
    outcome: str
    """The shared outcome words, as they read in the first statement."""


@dataclass(frozen=True)
class _Direction:
    axis: Axis
    sign: int
    window: frozenset[str]
    words: str


def _window_after(text: str, end: int) -> tuple[frozenset[str], str]:
    words = re.findall(r"[^\W_][\w-]*", _POPULATION_BREAK.split(text[end:], maxsplit=1)[0])
    words = words[:_OUTCOME_WINDOW]
    while words and words[0].lower() in _LEADING_FUNCTION_WORDS:
        words.pop(0)
    phrase = " ".join(words)
    return frozenset(content_terms(phrase) - _DIRECTION_WORDS), phrase


def directions(sentence: str) -> list[_Direction]:
    """The directions of effect ``sentence`` states, each with its outcome window."""
    text = strip_markers(sentence)
    found: list[_Direction] = []
    negated_spans: list[tuple[int, int]] = []
    for pattern, axis, sign in (
        (_NOT_ASSOCIATED, "association", -1),
        (_NOT_SUPERIOR, "superiority", -1),
        (_NEGATED_CHANGE, "direction", 0),
    ):
        for match in pattern.finditer(text):
            negated_spans.append(match.span())
            if sign:
                window, words = _window_after(text, match.end())
                found.append(_Direction(axis, sign, window, words))  # type: ignore[arg-type]

    def negated(span: tuple[int, int]) -> bool:
        return any(start <= span[0] < end or start < span[1] <= end for start, end in negated_spans)

    for pattern, axis, sign in (
        (_INCREASE, "direction", 1),
        (_DECREASE, "direction", -1),
        (_ASSOCIATED, "association", 1),
        (_SUPERIOR, "superiority", 1),
    ):
        for match in pattern.finditer(text):
            if negated(match.span()):
                continue
            window, words = _window_after(text, match.end())
            found.append(_Direction(axis, sign, window, words))  # type: ignore[arg-type]
    return found


def find_conflicts(statements: Sequence[Statement]) -> list[Conflict]:
    """Each pair of statements from different records with opposite directions on one outcome.

    At most one conflict per pair of records (the first found, in statement order).
    """
    parsed = [(s, directions(s.text), content_terms(strip_markers(s.text))) for s in statements]
    conflicts: list[Conflict] = []
    seen: set[frozenset[str]] = set()
    for i, (first, first_directions, first_terms) in enumerate(parsed):
        for second, second_directions, second_terms in parsed[i + 1 :]:
            pair = frozenset((first.source, second.source))
            if first.source == second.source or pair in seen:
                continue
            if len((first_terms & second_terms) - _DIRECTION_WORDS) < MIN_SHARED_TERMS:
                continue
            for a in first_directions:
                match = next(
                    (
                        b
                        for b in second_directions
                        if b.axis == a.axis and b.sign == -a.sign and a.window & b.window
                    ),
                    None,
                )
                if match is not None:
                    conflicts.append(Conflict(first, second, a.axis, a.words))
                    seen.add(pair)
                    break
    return conflicts


__all__ = ["Axis", "Conflict", "Statement", "directions", "find_conflicts"]
