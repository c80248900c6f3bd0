"""Checking answer sentences against the passages they cite.

Each sentence of a draft answer that asserts something (a *claim*, see :func:`is_claim`) must be
supported by the texts of the evidence it cites. Support comes from a *judge* when one is given (an
LLM asked "does the passage support the claim?", batched) or else from :func:`support_score`, a
lexical + embedding score that needs no language model. Unsupported claims are removed or marked,
and :func:`rewrite_query` builds the query for one more retrieval round when support is low.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from medgraph.errors import EngineError
from medgraph.knowledge.chunking import split_sentences
from medgraph.knowledge.citations import (
    UNSUPPORTED_FLAG,
    DraftSentence,
    SentenceCheck,
    Verification,
    content_terms,
    evidence_by_number,
    numbers_in,
    stem,
    strip_markers,
)
from medgraph.knowledge.types import Evidence

Judge = Callable[[Sequence[tuple[str, str]]], Sequence[float]]
"""Batched support judge: ``(claim, cited passages joined)`` pairs -> P(supported) for each."""

Embed = Callable[[Sequence[str]], npt.NDArray[np.floating]]
"""Text embedder: strings -> one vector per string (rows are L2-normalised here if they are not)."""

VerifyAction = Literal["remove", "mark"]

LEXICAL_WEIGHT = 0.5
"""Share of the lexical coverage in :func:`support_score` when an embedder is given."""
COSINE_FLOOR = 0.3
COSINE_CEILING = 0.9
"""Cosines at or below the floor count as no support, at or above the ceiling as full support.

all-MiniLM-L6-v2 puts unrelated sentences of one domain near 0.0-0.3 and paraphrases near
0.6-1.0, so the linear map between the two bounds spreads the useful range over [0, 1].
"""
MISSING_NUMBER_FACTOR = 0.25
"""Each number of the claim that no passage contains multiplies the score by this."""

_PASSAGE_SEPARATOR = "\n\n"

_NON_CLAIM_PATTERNS = (
    # greetings and pleasantries
    r"^(hi|hello|hey|greetings|dear|good (morning|afternoon|evening|day)|thanks|thank you"
    r"|you'?re welcome|you are welcome|glad to help|happy to help)\b",
    # hedges and refusals about the answerer, not the medicine
    r"^(i am|i'm|we are|we're) (not (sure|certain|able)|unsure|uncertain|unable|sorry)\b",
    r"^(i|we) (do not|don't|cannot|can't|could not|couldn't|did not|didn't|was unable to"
    r"|were unable to) (know|find|tell|say|answer|determine|locate|give|provide)\b",
    r"^sorry\b",
    r"^(the )?(retrieved |available |provided |cited )?(evidence|sources|literature|passages"
    r"|documents|abstracts) (do|does|did) not (address|mention|discuss|cover|say|answer)\b",
    r"^no (relevant )?(evidence|sources|information|results|literature) (was|were) found\b",
    # safety notices and advice to see a professional
    r"\bnot (intended )?(for|to be used for) (clinical|medical) (use|decisions?|diagnosis)\b",
    r"\bnot (a substitute for|medical advice)\b",
    r"\bnot intended to (directly )?inform clinical\b",
    r"^(please )?(always )?(consult|talk to|speak (to|with)|see|ask) (a|an|your) (doctor|physician"
    r"|clinician|pharmacist|healthcare|health care|medical|qualified)\b",
    r"^(please )?(seek|get) (immediate |urgent |emergency )?(medical|emergency) (care|attention"
    r"|help)\b",
    r"^(call|dial) (911|999|112|emergency)\b",
    # labels of the answer itself
    r"^extractive answer \(no language model\)",
    r"^(here is|here are|here's|below is|below are)\b",
)
_NON_CLAIM = re.compile("|".join(f"(?:{pattern})" for pattern in _NON_CLAIM_PATTERNS), re.I)
_MIN_CLAIM_TERMS = 2


def is_claim(sentence: str) -> bool:
    """Whether ``sentence`` asserts something a passage could support or contradict.

    Not claims: questions, lead-ins ending in ``:``, greetings, hedges about the answerer ("I am
    not sure."), the not-for-clinical-use notice and advice to see a clinician, the extractive
    label, and sentences with fewer than two content words or numbers ("Yes.").
    """
    text = strip_markers(sentence).strip().strip("\"'“”‘’ ")
    if not text or text.endswith(("?", ":")):
        return False
    if _NON_CLAIM.search(text):
        return False
    return len(content_terms(text)) + len(numbers_in(text, words=False)) >= _MIN_CLAIM_TERMS


def _lexical_support(sentence: str, passages: Sequence[str]) -> tuple[float, int]:
    """Coverage of the claim's content words by the passages, and its numbers none contains."""
    claim_terms = content_terms(sentence)
    passage_terms: set[str] = set()
    passage_numbers: set[str] = set()
    for passage in passages:
        passage_terms |= content_terms(passage)
        passage_numbers |= numbers_in(passage)
    coverage = len(claim_terms & passage_terms) / len(claim_terms) if claim_terms else 0.0
    missing = len(numbers_in(sentence) - passage_numbers)
    return coverage, missing


def _unit_rows(vectors: npt.NDArray[np.floating], expected: int) -> npt.NDArray[np.float64]:
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != expected:
        raise ValueError(
            f"the embed function returned an array of shape {matrix.shape} for {expected} texts; "
            "it must return one vector per text, shape (len(texts), dimension)"
        )
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def _max_cosines(claims: Sequence[tuple[str, Sequence[str]]], embed: Embed) -> list[float]:
    """For each (claim, passages): the largest cosine between the claim and a passage sentence.

    Every distinct text is embedded once, in one call.
    """
    texts: dict[str, int] = {}
    claim_rows: list[tuple[int, list[int]]] = []
    for claim, passages in claims:
        pieces = [
            passage[start:end] for passage in passages for start, end in split_sentences(passage)
        ]
        rows = [texts.setdefault(piece, len(texts)) for piece in pieces]
        claim_rows.append((texts.setdefault(claim, len(texts)), rows))
    if not texts:
        return []
    vectors = _unit_rows(embed(list(texts)), len(texts))
    cosines: list[float] = []
    for claim_row, rows in claim_rows:
        best = float(np.max(vectors[rows] @ vectors[claim_row])) if rows else 0.0
        cosines.append(best)
    return cosines


def _combined_scores(
    claims: Sequence[tuple[str, Sequence[str]]], embed: Embed | None
) -> list[float]:
    cosines = _max_cosines(claims, embed) if embed is not None and claims else None
    scores: list[float] = []
    for index, (claim, passages) in enumerate(claims):
        coverage, missing = _lexical_support(claim, passages)
        base = coverage
        if cosines is not None:
            spread = (cosines[index] - COSINE_FLOOR) / (COSINE_CEILING - COSINE_FLOOR)
            semantic = min(1.0, max(0.0, spread))
            base = LEXICAL_WEIGHT * coverage + (1.0 - LEXICAL_WEIGHT) * semantic
        scores.append(min(1.0, max(0.0, base * MISSING_NUMBER_FACTOR**missing)))
    return scores


def support_score(sentence: str, passages: Sequence[str], embed: Embed | None = None) -> float:
    """How well ``passages`` support ``sentence``, in [0, 1]; no language model involved.

    With ``T(x)`` the stemmed content words of ``x`` (stopwords and numbers removed)::

        L = |T(sentence) & T(passages)| / |T(sentence)|      (0 when the sentence has none)
        E = clip((max cos(sentence, s) - 0.3) / (0.9 - 0.3), 0, 1)
            over every sentence s of every passage          (only when ``embed`` is given)
        base = L                                            without ``embed``
        base = 0.5 * L + 0.5 * E                            with ``embed``
        score = base * 0.25 ** m

    where ``m`` counts the numbers of the sentence ("97%", "2.5", "five") that no passage
    contains: a number the sources never state is a strong sign of a fabricated claim.
    """
    return _combined_scores([(sentence, list(passages))], embed)[0]


def _judge_scores(judge: Judge, pairs: Sequence[tuple[str, str]]) -> list[float]:
    raw = list(judge(pairs))
    if len(raw) != len(pairs):
        raise EngineError(
            f"the support judge returned {len(raw)} scores for {len(pairs)} sentences; it must "
            "return one probability per (sentence, passages) pair, in order"
        )
    scores: list[float] = []
    for position, value in enumerate(raw):
        score = float(value)
        if not math.isfinite(score) or not 0.0 <= score <= 1.0:
            raise EngineError(
                f"the support judge returned {value!r} for sentence {position}; it must return "
                "probabilities between 0 and 1"
            )
        scores.append(score)
    return scores


def _without_flag(text: str) -> str:
    stripped = text.rstrip()
    if stripped.endswith(UNSUPPORTED_FLAG):
        return stripped[: -len(UNSUPPORTED_FLAG)].rstrip()
    return stripped


def verify_sentences(
    sentences: Sequence[DraftSentence],
    evidence: Sequence[Evidence],
    *,
    judge: Judge | None = None,
    embed: Embed | None = None,
    threshold: float = 0.5,
    action: VerifyAction = "remove",
) -> tuple[list[DraftSentence], Verification]:
    """Check every claim against the texts of the evidence it cites; drop or mark the unsupported.

    A claim is supported when its score reaches ``threshold``: the judge's probability when a
    judge is given (called once, with every claim that cites something), else
    :func:`support_score` (with ``embed`` when given). A claim citing no existing evidence is
    unsupported (score 0). Sentences that are not claims (:func:`is_claim`) are kept with method
    ``"no-claim"``. With ``action="remove"`` unsupported claims are dropped and listed in
    ``Verification.removed``; with ``"mark"`` they stay, their text suffixed ``" [unsupported]"``.
    Kept sentences cite only numbers that exist in ``evidence``.
    ``supported_fraction`` is supported claims over claims (1.0 when there are none).
    """
    if action not in ("remove", "mark"):
        raise ValueError(f"action must be 'remove' or 'mark', got {action!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie between 0 and 1, got {threshold!r}")
    known = evidence_by_number(evidence)
    method = "judge" if judge is not None else "lexical+embedding"
    texts = [_without_flag(sentence.text) for sentence in sentences]
    cited = [[n for n in dict.fromkeys(s.citations) if n in known] for s in sentences]
    claims = [is_claim(text) for text in texts]
    pending = [index for index, claim in enumerate(claims) if claim and cited[index]]
    pairs = [(texts[i], [known[n].chunk.text for n in cited[i]]) for i in pending]
    if not pairs:
        scores: list[float] = []
    elif judge is not None:
        scores = _judge_scores(judge, [(claim, _PASSAGE_SEPARATOR.join(p)) for claim, p in pairs])
    else:
        scores = _combined_scores(pairs, embed)
    score_of = dict(zip(pending, scores, strict=True))

    checks: list[SentenceCheck] = []
    kept: list[DraftSentence] = []
    removed: list[str] = []
    for index, sentence in enumerate(sentences):
        if not claims[index]:
            check = SentenceCheck(
                sentence=texts[index], citations=cited[index], supported=True, score=1.0,
                method="no-claim",
            )  # fmt: skip
        else:
            score = score_of.get(index, 0.0)
            check = SentenceCheck(
                sentence=texts[index], citations=cited[index], supported=score >= threshold,
                score=score, method=method,
            )  # fmt: skip
        checks.append(check)
        if check.supported:
            kept.append(DraftSentence(text=texts[index], citations=cited[index]))
        elif action == "mark":
            flagged = f"{texts[index]} {UNSUPPORTED_FLAG}"
            kept.append(DraftSentence(text=flagged, citations=cited[index]))
        else:
            removed.append(sentence.text)
    claim_checks = [check for check in checks if check.method != "no-claim"]
    fraction = (
        sum(check.supported for check in claim_checks) / len(claim_checks) if claim_checks else 1.0
    )
    return kept, Verification(sentences=checks, supported_fraction=fraction, removed=removed)


# Words too common in clinical abstracts to steer a search.
_GENERIC_WORDS = frozenset(
    stem(word)
    for word in (
        "study", "patient", "result", "effect", "significant", "significantly", "associated",
        "association", "group", "use", "used", "using", "data", "evidence", "showed", "shown",
        "found", "increase", "increased", "decrease", "decreased", "reduce", "reduced",
        "compared", "higher", "lower",
    )
)  # fmt: skip
_QUERY_WORD = re.compile(r"[^\W\d_][^\W_]*(?:-[^\W_]+)*")


def rewrite_query(question: str, unsupported: Sequence[str], *, max_terms: int = 8) -> str:
    """The query for one more retrieval round: ``question`` plus what the failed claims were about.

    Adds up to ``max_terms`` distinctive words of the ``unsupported`` sentences (content words of
    three or more letters that the question does not already contain, generic study vocabulary
    left out, one form per stem), preferring longer words, in the order they first appear.
    """
    if max_terms < 0:
        raise ValueError(f"max_terms must be 0 or more, got {max_terms!r}")
    question = " ".join(question.split())
    seen = set(content_terms(question))
    candidates: list[tuple[int, str]] = []
    for sentence in unsupported:
        for match in _QUERY_WORD.finditer(strip_markers(sentence)):
            word = match.group(0).lower()
            terms = content_terms(word)
            if len(word) < 3 or not terms or terms <= seen or terms & _GENERIC_WORDS:
                continue
            seen |= terms
            candidates.append((len(candidates), word))
    chosen = sorted(candidates, key=lambda item: (-len(item[1]), item[0]))[:max_terms]
    added = [word for _, word in sorted(chosen)]
    return " ".join([question, *added]) if added else question


__all__ = [
    "Embed",
    "Judge",
    "VerifyAction",
    "is_claim",
    "rewrite_query",
    "support_score",
    "verify_sentences",
]
