"""Checking answer sentences against the passages they cite, and against the question.

Each sentence of a draft answer that asserts something (a *claim*, see :func:`is_claim`) must be
supported by the texts of the evidence it cites, and be about the question it answers. Support
comes from a *judge* when one is given (an LLM asked "does the passage support the claim?",
batched) or else from :func:`support_score`, a lexical + embedding score that needs no language
model. Relevance comes from a *grounding judge* (one constrained call per claim decides both
"supported?" and "relevant?") or else from
:func:`~medgraph.knowledge.relevance.relevance_score` (the question's key terms in the sentence
and its cited record, and the sentence's link to the question). Unsupported and off-topic claims
are removed or marked, and :func:`rewrite_query` builds the query for one more retrieval round
when support is low.
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
    OFF_TOPIC_FLAG,
    UNSUPPORTED_FLAG,
    DraftSentence,
    SentenceCheck,
    Verification,
    content_terms,
    evidence_by_number,
    numbers_in,
    split_flags,
    stem,
    strip_markers,
)
from medgraph.knowledge.relevance import COVERAGE_FLOOR, relevance_score
from medgraph.knowledge.types import Evidence

Judge = Callable[[Sequence[tuple[str, str]]], Sequence[float]]
"""Batched support judge: ``(claim, cited passages joined)`` pairs -> P(supported) for each."""

GroundingJudge = Callable[[Sequence[tuple[str, str, str]]], Sequence[tuple[float, float]]]
"""Batched judge of ``(question, claim, cited passages joined)`` triples -> for each, in one
decision, ``(P(supported), P(relevant to the question))``."""

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
    r"^note:",
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


def _grounding_scores(
    judge: GroundingJudge, triples: Sequence[tuple[str, str, str]]
) -> list[tuple[float, float]]:
    raw = list(judge(triples))
    if len(raw) != len(triples):
        raise EngineError(
            f"the grounding judge returned {len(raw)} verdicts for {len(triples)} sentences; it "
            "must return one (supported, relevant) pair per sentence, in order"
        )
    verdicts: list[tuple[float, float]] = []
    for position, pair in enumerate(raw):
        values = tuple(float(value) for value in pair)
        if len(values) != 2 or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
            raise EngineError(
                f"the grounding judge returned {pair!r} for sentence {position}; it must return "
                "two probabilities between 0 and 1 (supported, relevant)"
            )
        verdicts.append((values[0], values[1]))
    return verdicts


def _question_cosines(
    question: str, claims: Sequence[str], embed: Embed | None
) -> list[float | None]:
    if embed is None or not claims:
        return [None] * len(claims)
    texts = list(dict.fromkeys([question, *claims]))
    vectors = _unit_rows(embed(texts), len(texts))
    row = {text: index for index, text in enumerate(texts)}
    return [float(vectors[row[claim]] @ vectors[row[question]]) for claim in claims]


def _record_passages(evidence: Sequence[Evidence], cited: Sequence[Evidence]) -> list[str]:
    """The texts of every retrieved passage of the records ``cited`` belongs to."""
    sources = {item.source_id for item in cited}
    return list(dict.fromkeys(e.chunk.text for e in evidence if e.source_id in sources))


def verify_sentences(
    sentences: Sequence[DraftSentence],
    evidence: Sequence[Evidence],
    *,
    question: str | None = None,
    judge: Judge | None = None,
    grounding_judge: GroundingJudge | None = None,
    embed: Embed | None = None,
    threshold: float = 0.5,
    relevance_floor: float = COVERAGE_FLOOR,
    action: VerifyAction = "remove",
    off_topic: VerifyAction = "remove",
) -> tuple[list[DraftSentence], Verification]:
    """Check every claim against the evidence it cites and against ``question``; drop or mark
    the unsupported and the off-topic.

    A claim is supported when its score reaches ``threshold``: with ``grounding_judge`` and a
    ``question``, the judge's first probability (one call decides support and relevance for
    every claim that cites something); else ``judge``'s probability; else :func:`support_score`
    (with ``embed`` when given). A claim citing no existing evidence is unsupported (score 0).
    With a ``question``, a claim is relevant when its relevance reaches ``relevance_floor``: the
    grounding judge's second probability, or else
    :func:`~medgraph.knowledge.relevance.relevance_score` over the claim and every retrieved
    passage of the records it cites (with the claim's embedding cosine to the question when
    ``embed`` is given). Without a ``question`` every claim counts as relevant.
    Sentences that are not claims (:func:`is_claim`) are kept with method ``"no-claim"``.
    With ``action="remove"`` unsupported claims are dropped and listed in
    ``Verification.removed``; with ``"mark"`` they stay, suffixed ``" [unsupported]"``.
    ``off_topic`` does the same for relevant-but-not claims (flag ``" [off-topic]"``). Kept
    sentences cite only numbers that exist in ``evidence``. ``supported_fraction`` and
    ``relevant_fraction`` are supported and relevant claims over claims (1.0 when there are none).
    """
    for name, value in (("action", action), ("off_topic", off_topic)):
        if value not in ("remove", "mark"):
            raise ValueError(f"{name} must be 'remove' or 'mark', got {value!r}")
    for name, bound in (("threshold", threshold), ("relevance_floor", relevance_floor)):
        if not 0.0 <= bound <= 1.0:
            raise ValueError(f"{name} must lie between 0 and 1, got {bound!r}")
    known = evidence_by_number(evidence)
    grounding = grounding_judge is not None and question is not None
    method = "judge" if grounding or judge is not None else "lexical+embedding"
    texts = [split_flags(sentence.text)[0] for sentence in sentences]
    cited = [[n for n in dict.fromkeys(s.citations) if n in known] for s in sentences]
    claims = [is_claim(text) for text in texts]
    pending = [index for index, claim in enumerate(claims) if claim and cited[index]]
    pairs = [(texts[i], [known[n].chunk.text for n in cited[i]]) for i in pending]
    relevances: list[float] | None = None
    if not pairs:
        scores: list[float] = []
    elif grounding:
        assert grounding_judge is not None and question is not None
        verdicts = _grounding_scores(
            grounding_judge,
            [(question, claim, _PASSAGE_SEPARATOR.join(p)) for claim, p in pairs],
        )
        scores = [supported for supported, _ in verdicts]
        relevances = [relevant for _, relevant in verdicts]
    elif judge is not None:
        scores = _judge_scores(judge, [(claim, _PASSAGE_SEPARATOR.join(p)) for claim, p in pairs])
    else:
        scores = _combined_scores(pairs, embed)
    if relevances is None and question is not None and pending:
        cosines = _question_cosines(question, [texts[i] for i in pending], embed)
        relevances = [
            relevance_score(
                question, texts[i], _record_passages(evidence, [known[n] for n in cited[i]]), cosine
            )
            for i, cosine in zip(pending, cosines, strict=True)
        ]
    score_of = dict(zip(pending, scores, strict=True))
    relevance_of = dict(zip(pending, relevances, strict=True)) if relevances is not None else {}

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
            relevance = relevance_of.get(index, 0.0 if question is not None else 1.0)
            check = SentenceCheck(
                sentence=texts[index], citations=cited[index], supported=score >= threshold,
                score=score, method=method, relevant=relevance >= relevance_floor,
                relevance=relevance,
            )  # fmt: skip
        checks.append(check)
        failed = [
            (flag, how)
            for ok, flag, how in (
                (check.supported, UNSUPPORTED_FLAG, action),
                (check.relevant, OFF_TOPIC_FLAG, off_topic),
            )
            if not ok
        ]
        if any(how == "remove" for _, how in failed):
            removed.append(sentence.text)
        else:
            text = " ".join([texts[index], *(flag for flag, _ in failed)])
            kept.append(sentence.model_copy(update={"text": text, "citations": cited[index]}))
    claim_checks = [check for check in checks if check.method != "no-claim"]

    def share(values: Sequence[bool]) -> float:
        return sum(values) / len(values) if values else 1.0

    return kept, Verification(
        sentences=checks,
        supported_fraction=share([c.supported for c in claim_checks]),
        relevant_fraction=share([c.relevant for c in claim_checks]),
        removed=removed,
    )


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
    "GroundingJudge",
    "Judge",
    "VerifyAction",
    "is_claim",
    "rewrite_query",
    "support_score",
    "verify_sentences",
]
