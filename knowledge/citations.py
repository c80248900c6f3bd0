"""Answer sentences with citation markers, the citations they resolve to, and their verification.

A draft answer is a list of :class:`DraftSentence` (text plus the evidence numbers it cites). Every
citation number must name an :class:`~medgraph.knowledge.types.Evidence` that was retrieved; a
:class:`Citation` carries the record's metadata and the exact supporting quote with its span.

:func:`parse_cited_text` and :func:`render_answer` convert between answer text with inline
``[n]`` markers and draft sentences; :func:`resolve_citations` turns the cited numbers into
citations with quotes, one per cited passage. The assistant's final answer numbers per record
instead: :func:`record_numbering` maps passage numbers to record numbers (1..n in order of first
citation), :func:`renumber_sentences` applies them, and :func:`resolve_record_citations` gives one
citation per record carrying all its cited passages. The term helpers (:func:`content_terms`,
:func:`numbers_in`) are shared with :mod:`medgraph.knowledge.verification` and the extractive
engine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, Field

from medgraph.knowledge.chunking import split_sentences
from medgraph.knowledge.types import Evidence


class DraftSentence(BaseModel):
    """One answer sentence and the evidence numbers (``[n]``) it cites."""

    text: str
    citations: list[int] = Field(default_factory=list)
    removed_identifiers: list[str] = Field(default_factory=list)
    """Citation markers, PMIDs, DOIs and URLs taken out of ``text`` because the sentence does not
    cite them (:func:`~medgraph.knowledge.identifiers.scrub_sentences`), as a reader sees them."""


class CitedPassage(BaseModel):
    """One cited passage of a record: the supporting quote and where it lies in the record."""

    chunk_id: str
    quote: str
    start: int
    end: int
    """Character span of ``quote`` inside the source document's text."""


class Citation(BaseModel):
    """A numbered reference as shown under an answer.

    ``quote``, ``start``, ``end`` and ``chunk_id`` describe the first cited passage;
    ``passages`` lists every cited passage of the record, in order of first citation (the
    assistant numbers per record, so one reference may quote several chunks of one abstract).
    """

    n: int
    source_id: str
    title: str | None = None
    year: int | None = None
    journal: str | None = None
    url: str | None = None
    provenance: str = "corpus"
    """``"corpus"`` (the operator's ingest) or ``"upload"`` (a record added through the API)."""
    reference: str
    """The rendered bibliography line: ``[n] Author et al. Title. Journal Year. PMID:...``."""
    quote: str
    """The passage text that supports the answer (exact text of the cited chunk or a part of it)."""
    start: int
    end: int
    """Character span of ``quote`` inside the source document's text."""
    chunk_id: str
    passages: list[CitedPassage] = Field(default_factory=list)
    """Every cited passage of this record, the first being ``quote``/``start``/``end``."""

    def cited_passages(self) -> list[CitedPassage]:
        """``passages``, or the one passage of the flat fields when the list is empty."""
        if self.passages:
            return list(self.passages)
        return [
            CitedPassage(chunk_id=self.chunk_id, quote=self.quote, start=self.start, end=self.end)
        ]


class SentenceCheck(BaseModel):
    """Whether one answer sentence is supported by the passages it cites and is on the question."""

    sentence: str
    citations: list[int] = Field(default_factory=list)
    supported: bool
    score: float
    """Support score in [0, 1] (judge probability, or the lexical/embedding score)."""
    method: str
    """"judge", "lexical+embedding", or "no-claim" for sentences that assert nothing."""
    relevant: bool = True
    """Whether the sentence is about the question it answers (see ``relevance``)."""
    relevance: float = 1.0
    """Relevance to the question in [0, 1] (judge verdict, or the key-term/embedding score)."""


class ScrubbedSentence(BaseModel):
    """An answer sentence that lost identifiers it does not cite (markers, PMIDs, DOIs, URLs)."""

    sentence: str
    """The sentence as the answer shows it (without the identifiers)."""
    removed: list[str] = Field(default_factory=list)
    """The identifiers taken out, as a reader sees them (NFKC, invisible characters removed)."""


class QuarantinedPassage(BaseModel):
    """A retrieved passage of a record that carries instructions or markup: listed, never quoted
    or cited."""

    source_id: str
    chunk_id: str
    reason: str


class Verification(BaseModel):
    """Per-sentence support and relevance, and the supported and relevant fractions of an answer."""

    sentences: list[SentenceCheck] = Field(default_factory=list)
    supported_fraction: float = 1.0
    relevant_fraction: float = 1.0
    """Claims about the question over claims (1.0 when there are none)."""
    removed: list[str] = Field(default_factory=list)
    """Sentences dropped because nothing they cite supports them or they are off the question."""
    rounds: int = 0
    """Extra retrieval rounds run because support was low."""
    scrubbed: list[ScrubbedSentence] = Field(default_factory=list)
    """Answer sentences whose text lost citation markers, PMIDs, DOIs or URLs it does not cite."""
    quarantined: list[QuarantinedPassage] = Field(default_factory=list)
    """Retrieved passages never quoted or used as evidence because they carry instructions."""


# -- lexical terms (shared with verification and the extractive engine) -------------------------

# Function words that carry no checkable content. Negations ("no", "not", "without") are left out on
# purpose: a claim that negates what its passage says keeps an unmatched term.
_STOPWORD_TEXT = """
    a about above after again against all also although am an and any are as at be because been
    before being below between both but by can could did do does doing done down during each either
    etc even ever every for from further had has have having he her here hers herself him himself
    his how however i if in into is it its itself just may me might more most much must my myself
    neither nor of off on once only or other others otherwise our ours ourselves out over own per
    rather same shall she should since so some such than that the their theirs them themselves then
    there therefore these they this those through thus to too under until up upon us very via was
    we were what whatever when where whereas whether which while who whom whose why will with within
    would yet you your yours yourself yourselves one ones among amongst across along around
    behind beyond toward towards throughout onto besides despite unless though
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# Number words read as numbers ("five cells" == "5 cells"); "one" is left out (mostly a pronoun).
NUMBER_WORDS = {
    "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
    "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
    "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "hundred": "100",
}  # fmt: skip

_TOKEN = re.compile(r"[^\W_]+")
# A number not glued to a preceding letter or digit ("HbA1c" holds none); thousands separators and
# decimals are part of it: "1,250", "2.5".
_NUMBER = re.compile(r"(?<![^\W_])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
# Suffixes stripped by :func:`stem`, longest first, with their replacements.
_SUFFIXES = (
    ("ments", ""), ("ment", ""), ("ness", ""), ("sses", "ss"), ("ies", "y"), ("ied", "y"),
    ("ings", ""), ("ing", ""), ("edly", ""), ("ed", ""), ("ly", ""), ("es", ""), ("s", ""),
)  # fmt: skip
_NO_PLURAL_ENDINGS = ("ss", "us", "is")
_MIN_STEM = 3


def stem(word: str) -> str:
    """A light suffix-stripping stem of a lower-case word: "reduces", "reducing" -> "reduc".

    One suffix is removed (the stem must keep at least three letters), then a final "e" and, after
    "-ed"/"-ing", a doubled final consonant ("stopped" -> "stop"). Not a linguistic stemmer: it only
    has to map the inflections of one word onto the same key.
    """
    if len(word) <= _MIN_STEM or not word.isalpha():
        return word
    for suffix, replacement in _SUFFIXES:
        if not word.endswith(suffix):
            continue
        if suffix == "s" and word.endswith(_NO_PLURAL_ENDINGS):
            break
        base = word[: -len(suffix)] + replacement
        if len(base) < _MIN_STEM:
            break
        if (
            suffix in ("ed", "ing", "edly", "ings")
            and len(base) > _MIN_STEM
            and base[-1] == base[-2]
            and base[-1] not in "aeiouylsz"
        ):
            base = base[:-1]
        word = base
        break
    if len(word) > _MIN_STEM and word.endswith("e"):
        word = word[:-1]
    return word


def content_terms(text: str) -> set[str]:
    """Stemmed lower-case content words of ``text``: no stopwords, no numbers, no single letters.

    Number words ("five") are left to :func:`numbers_in`.
    """
    terms: set[str] = set()
    for token in _TOKEN.findall(text.lower()):
        if token in STOPWORDS or token in NUMBER_WORDS or token.isdigit() or len(token) < 2:
            continue
        terms.add(stem(token))
    return terms


def _normalise_number(raw: str) -> str:
    number = raw.replace(",", "")
    whole, _, fraction = number.partition(".")
    whole = whole.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def numbers_in(text: str, *, words: bool = True) -> set[str]:
    """Numbers in ``text``, normalised ("1,250" -> "1250", "2.50" -> "2.5", "97%" -> "97").

    With ``words`` the number words two..twenty, thirty, forty, fifty and hundred count too.
    """
    found = {_normalise_number(match) for match in _NUMBER.findall(text)}
    if words:
        found.update(
            NUMBER_WORDS[token] for token in _TOKEN.findall(text.lower()) if token in NUMBER_WORDS
        )
    return found


def terms_with_numbers(text: str) -> set[str]:
    """:func:`content_terms` plus :func:`numbers_in` (numbers prefixed with ``#``)."""
    return content_terms(text) | {f"#{number}" for number in numbers_in(text)}


# -- inline citation markers ----------------------------------------------------------------------

UNSUPPORTED_FLAG = "[unsupported]"
"""Appended (after a space) to an answer sentence that verification kept but could not support."""
OFF_TOPIC_FLAG = "[off-topic]"
"""Appended (after a space) to an answer sentence that verification kept but found off-question."""
FLAGS = (UNSUPPORTED_FLAG, OFF_TOPIC_FLAG)

# Citation numbers are 1-3 digits so a bracketed year ("[2010]") is never read as a marker.
_MARKER_BODY = r"\d{1,3}(?:\s*[-–—,]\s*\d{1,3})*"
_MARKER = re.compile(rf"\s*\[\s*({_MARKER_BODY})\s*\]")
_FLAG = re.compile(r"\s*\[(?:unsupported|off-topic)\]")
_MARKER_OR_FLAG = rf"\[\s*{_MARKER_BODY}\s*\]|\[(?:unsupported|off-topic)\]"
# Markers written after the final punctuation ("glucose.[1] It") belong to the sentence before it.
_MARKERS_AFTER_PUNCTUATION = re.compile(
    rf"([.!?…]+[\"'”’)]*)((?:\s*(?:{_MARKER_OR_FLAG}))+)(?=\s|$)"
)
_FINAL_PUNCTUATION = re.compile(r"[.!?…]+[\"'”’)]*$")
_CITATION_RANGE_LIMIT = 50


def strip_markers(text: str) -> str:
    """``text`` without citation markers and without the ``[unsupported]``/``[off-topic]`` flags."""
    return _FLAG.sub("", _MARKER.sub("", text)).strip()


def _marker_numbers(body: str) -> list[int]:
    """Citation numbers of one marker body: "1, 3" -> [1, 3]; "1-3" -> [1, 2, 3]."""
    numbers: list[int] = []
    for part in body.split(","):
        bounds = [int(piece) for piece in re.split(r"\s*[-–—]\s*", part.strip()) if piece]
        if len(bounds) == 2 and 0 <= bounds[1] - bounds[0] <= _CITATION_RANGE_LIMIT:
            numbers.extend(range(bounds[0], bounds[1] + 1))
        else:
            numbers.extend(bounds)
    return [number for number in numbers if number >= 1]


def parse_cited_text(text: str) -> list[DraftSentence]:
    """Split an answer with inline markers into sentences and the citation numbers each carries.

    ``"Metformin lowers glucose [1][3]. It is cheap [2]."`` gives two sentences citing
    ``[1, 3]`` and ``[2]``. Markers may be ``[1]``, ``[1, 3]``, ``[1-3]`` or runs like
    ``[1][2]``, inside the sentence, before its final period or right after it. Marker text is
    removed from the sentence; trailing ``[unsupported]`` and ``[off-topic]`` flags stay at the
    end of its sentence's text. Sentences are found with
    :func:`~medgraph.knowledge.chunking.split_sentences`; text without markers gives sentences
    citing nothing.
    """
    normalised = _MARKERS_AFTER_PUNCTUATION.sub(lambda m: m.group(2) + m.group(1), text)
    sentences: list[DraftSentence] = []
    for start, end in split_sentences(normalised):
        raw = normalised[start:end]
        citations: list[int] = []
        for marker in _MARKER.finditer(raw):
            citations.extend(_marker_numbers(marker.group(1)))
        flags = [flag for flag in FLAGS if flag in raw]
        plain = strip_markers(raw)
        if not plain:
            # a run of markers on its own cites for the sentence before it
            if sentences:
                previous = sentences[-1]
                previous.citations = list(dict.fromkeys([*previous.citations, *citations]))
            continue
        if flags:
            plain = " ".join([plain, *flags])
        sentences.append(DraftSentence(text=plain, citations=list(dict.fromkeys(citations))))
    return sentences


def split_flags(text: str) -> tuple[str, list[str]]:
    """``text`` without its trailing verification flags, and those flags in order."""
    text = text.strip()
    flags: list[str] = []
    while True:
        flag = next((f for f in FLAGS if text.endswith(f)), None)
        if flag is None:
            return text, flags
        text = text[: -len(flag)].rstrip()
        flags.insert(0, flag)


def render_sentence(sentence: DraftSentence) -> str:
    """One sentence with its markers before the final punctuation: ``"It is cheap [2]."``."""
    text, flags = split_flags(sentence.text)
    flag = "".join(f" {f}" for f in flags)
    markers = "".join(f"[{number}]" for number in dict.fromkeys(sentence.citations))
    if markers:
        final = _FINAL_PUNCTUATION.search(text)
        if final is not None and final.start() > 0:
            text = f"{text[: final.start()].rstrip()} {markers}{text[final.start() :]}"
        else:
            text = f"{text} {markers}"
    return text + flag


def render_answer(sentences: Sequence[DraftSentence]) -> str:
    """The answer as one paragraph, markers placed before each sentence's final punctuation.

    ``"Sentence one [1]. Sentence two [2][3]."``; :func:`parse_cited_text` reads it back.
    """
    return " ".join(rendered for rendered in map(render_sentence, sentences) if rendered)


# -- resolving numbers to evidence ----------------------------------------------------------------


def evidence_by_number(evidence: Sequence[Evidence]) -> dict[int, Evidence]:
    """Evidence keyed by citation number (the first of any repeated number; unnumbered skipped)."""
    numbered: dict[int, Evidence] = {}
    for item in evidence:
        if item.number is not None and item.number not in numbered:
            numbered[item.number] = item
    return numbered


def drop_unknown_citations(
    sentences: Sequence[DraftSentence], evidence: Sequence[Evidence]
) -> list[DraftSentence]:
    """Copies of ``sentences`` citing only numbers that some evidence carries (repeats removed)."""
    known = evidence_by_number(evidence)
    return [
        sentence.model_copy(
            update={"citations": [n for n in dict.fromkeys(sentence.citations) if n in known]}
        )
        for sentence in sentences
    ]


_MAX_QUOTE_GAP = 2
"""Quote a run of chunk sentences only when the best matches lie at most this many apart."""


def supporting_span(passage: str, claims: Sequence[str]) -> tuple[int, int]:
    """``(start, end)`` in ``passage`` of the sentence(s) that best support ``claims``.

    Each claim picks the passage sentence sharing the largest fraction of its terms (content
    words and numbers). The quote runs from the first to the last pick when they lie within
    three sentences of each other, else it is the best single pick; with no shared term at all,
    the whole passage (trimmed) is the quote.
    """
    spans = split_sentences(passage)
    if not spans:
        return (0, len(passage))
    sentence_terms = [terms_with_numbers(passage[start:end]) for start, end in spans]
    picks: dict[int, float] = {}
    for claim in claims:
        claim_terms = terms_with_numbers(claim)
        if not claim_terms:
            continue
        best_index, best_score = -1, 0.0
        for index, terms in enumerate(sentence_terms):
            shared = len(claim_terms & terms)
            if not shared:
                continue
            # coverage of the claim first, precision of the sentence to break ties
            score = shared / len(claim_terms) + 1e-3 * shared / len(terms)
            if score > best_score:
                best_index, best_score = index, score
        if best_index >= 0:
            picks[best_index] = max(best_score, picks.get(best_index, 0.0))
    if not picks:
        return (spans[0][0], spans[-1][1])
    first, last = min(picks), max(picks)
    if last - first > _MAX_QUOTE_GAP:
        first = last = max(picks, key=lambda index: (picks[index], -index))
    return (spans[first][0], spans[last][1])


def resolve_citations(
    sentences: Sequence[DraftSentence], evidence: Sequence[Evidence]
) -> list[Citation]:
    """One :class:`Citation` per cited number that some evidence carries, in order of first use.

    Numbers with no evidence are skipped (remove them from the sentences with
    :func:`drop_unknown_citations`). ``quote`` is the part of the cited chunk that best supports
    the sentences citing it (:func:`supporting_span`); ``start``/``end`` locate it in the
    document's text, so ``document.text[start:end] == quote`` wherever the text is at hand.
    """
    known = evidence_by_number(evidence)
    claims: dict[int, list[str]] = {}
    for sentence in sentences:
        for number in sentence.citations:
            if number in known:
                claims.setdefault(number, []).append(sentence.text)
    citations: list[Citation] = []
    for number, texts in claims.items():
        item = known[number]
        chunk, document = item.chunk, item.document
        start, end = supporting_span(chunk.text, texts)
        passage = CitedPassage(
            chunk_id=chunk.chunk_id,
            quote=chunk.text[start:end],
            start=chunk.start + start,
            end=chunk.start + end,
        )
        citations.append(
            Citation(
                n=number,
                source_id=document.source_id,
                title=document.title,
                year=document.year,
                journal=document.journal,
                url=document.link,
                provenance=document.provenance,
                reference=item.citation(number),
                quote=passage.quote,
                start=passage.start,
                end=passage.end,
                chunk_id=passage.chunk_id,
                passages=[passage],
            )
        )
    return citations


# -- numbering per record -------------------------------------------------------------------------


def record_numbering(
    sentences: Sequence[DraftSentence], evidence: Sequence[Evidence]
) -> dict[int, int]:
    """Passage number -> record number, records numbered 1..n in order of first citation.

    Passages of one record (same ``source_id``) share its number, so an abstract split into
    several chunks is one reference. Numbers no evidence carries are left out.
    """
    known = evidence_by_number(evidence)
    records: dict[str, int] = {}
    mapping: dict[int, int] = {}
    for sentence in sentences:
        for number in sentence.citations:
            if number in known and number not in mapping:
                source = known[number].source_id
                mapping[number] = records.setdefault(source, len(records) + 1)
    return mapping


def remap_numbers(numbers: Sequence[int], mapping: dict[int, int]) -> list[int]:
    """``numbers`` through ``mapping``, unmapped ones dropped and repeats removed (order kept)."""
    return list(dict.fromkeys(mapping[n] for n in numbers if n in mapping))


def renumber_sentences(
    sentences: Sequence[DraftSentence], mapping: dict[int, int]
) -> list[DraftSentence]:
    """Copies of ``sentences`` citing ``mapping``'s new numbers (see :func:`remap_numbers`)."""
    return [
        sentence.model_copy(update={"citations": remap_numbers(sentence.citations, mapping)})
        for sentence in sentences
    ]


def resolve_record_citations(
    sentences: Sequence[DraftSentence], evidence: Sequence[Evidence]
) -> list[Citation]:
    """One :class:`Citation` per cited record, numbered as :func:`record_numbering` does.

    ``sentences`` cite passage numbers. Each passage's quote is found as in
    :func:`resolve_citations` (from the sentences citing that passage); a record's citation
    carries all its cited passages in order of first citation, the first also in the flat
    ``quote``/``start``/``end``/``chunk_id`` fields.
    """
    mapping = record_numbering(sentences, evidence)
    known = evidence_by_number(evidence)
    by_record: dict[int, Citation] = {}
    for passage_citation in resolve_citations(sentences, evidence):
        n = mapping[passage_citation.n]
        record = by_record.get(n)
        if record is None:
            by_record[n] = passage_citation.model_copy(
                update={
                    "n": n,
                    "reference": known[passage_citation.n].citation(n),
                    "passages": list(passage_citation.passages),
                }
            )
        else:
            record.passages.extend(passage_citation.passages)
    return sorted(by_record.values(), key=lambda citation: citation.n)
