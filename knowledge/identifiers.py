"""Identifiers in answer text that the answer does not cite: citation markers, PMIDs, DOIs, URLs.

An answer's own citations are its ``[n]`` markers, rendered from :class:`DraftSentence.citations
<medgraph.knowledge.citations.DraftSentence>`; a marker, PMID, DOI or URL written in a sentence's
text came from the source (or the model) and would read as a reference the answer never checked
("as shown in PMID 99999999 [99999999]", "see https://evil.example/phish"). :func:`scrub_sentences`
removes every such identifier that is not one of the records the sentence cites, and records what
it removed. Matching looks at the text as a reader sees it
(:func:`~medgraph.knowledge.untrusted.visible_text`), so fullwidth and zero-width variants count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from medgraph.knowledge.citations import DraftSentence, ScrubbedSentence, evidence_by_number
from medgraph.knowledge.types import Document, Evidence
from medgraph.knowledge.untrusted import visible_text

_TRAILING = ".,;:!?)]}'\"”’"
_MARKER = r"\[\s*\d+(?:\s*[-–—,;]\s*\d+)*\s*\]"
_URL = r"\b(?:https?|ftp)://[^\s<>\"']+|\bwww\.[^\s<>\"']+"
_DOI = r"\b(?:doi\s*:?\s*)?10\.\d{4,9}/[^\s<>\"']+"
_PMID = r"\b(?:PMID|PMCID|PubMed(?:\s+ID)?)\s*[:#]?\s*(?:PMC)?\d{1,10}\b|\bPMC\d{4,10}\b"
_ONE = rf"(?:{_MARKER}|{_URL}|{_DOI}|{_PMID})"
# Identifiers in a row ("PMID 1 [1]", "PMID 1 and https://x"), removed as one piece.
_RUN = re.compile(rf"{_ONE}(?:\s*(?:,|;|/|&|\band\b|\bor\b)?\s*{_ONE})*", re.IGNORECASE)
_SINGLE = re.compile(_ONE, re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
_EMPTY_BRACKETS = re.compile(r"\(\s*[,;:]?\s*\)|\[\s*[,;:]?\s*\]")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?)\]])")
_SPACES = re.compile(r"[ \t]{2,}")
# Words that only point at the identifier after them: cut with it.
_LEAD_IN = re.compile(
    r"(?:[,;]\s*)?\b(?:see(?:\s+also)?|as\s+(?:shown|reported|described|published|cited)"
    r"\s+(?:in|by|at)|available\s+(?:at|from|in)|cf\.|refer\s+to|cite)\s*$",
    re.IGNORECASE,
)


def _key(identifier: str) -> str:
    """A comparable form: a PMID's digits ("pmc" and digits for a PMC id), a DOI or URL
    lower-cased without a ``doi:`` prefix or trailing ``/``."""
    text = identifier.strip().rstrip(_TRAILING).lower()
    if text.startswith(("pm", "pubmed")):
        return ("pmc" if text.startswith("pmc") else "") + "".join(_DIGITS.findall(text))
    return re.sub(r"^doi\s*:?\s*", "", text).rstrip("/")


def record_identifiers(documents: Iterable[Document]) -> set[str]:
    """The comparable forms (see :func:`strip_foreign_identifiers`) of the records' PMIDs, DOIs
    and links."""
    keys: set[str] = set()
    for document in documents:
        for value in (document.pmid, document.doi, document.url, document.link):
            if value:
                keys.add(_key(value))
    return keys


def _trimmed_end(view: str, start: int, end: int) -> int:
    """``end`` moved back over punctuation that closes the sentence, not the identifier."""
    while end > start and view[end - 1] in _TRAILING:
        if view[end - 1] == "]" and _SINGLE.fullmatch(view[start:end]):
            break
        end -= 1
    return end


def _foreign_spans(view: str, allowed: set[str]) -> list[tuple[int, int, list[str]]]:
    """``(start, end, identifiers)`` in ``view`` of each piece to cut: a run of foreign
    identifiers with its lead-in ("see", "as shown in"), or one foreign identifier of a run that
    also names an allowed one, with the separator beside it."""
    spans: list[tuple[int, int, list[str]]] = []
    for run in _RUN.finditer(view):
        pieces = [
            (piece.start(), _trimmed_end(view, piece.start(), piece.end()))
            for piece in _SINGLE.finditer(view, run.start(), run.end())
        ]
        foreign = [
            index
            for index, (start, end) in enumerate(pieces)
            if view[start] == "[" or _key(view[start:end]) not in allowed
        ]
        if len(foreign) == len(pieces):
            start, end = pieces[0][0], pieces[-1][1]
            lead_in = _LEAD_IN.search(view, 0, start)
            spans.append(
                (lead_in.start() if lead_in else start, end, [view[a:b] for a, b in pieces])
            )
            continue
        for index in foreign:
            start, end = pieces[index]
            if index > 0:
                start = pieces[index - 1][1]
            else:
                end = pieces[index + 1][0]
            spans.append((start, end, [view[slice(*pieces[index])]]))
    return spans


def strip_foreign_identifiers(text: str, allowed: set[str]) -> tuple[str, list[str]]:
    """``text`` without the markers, PMIDs, DOIs and URLs whose comparable form is not in
    ``allowed`` (see :func:`record_identifiers`), and those identifiers (as the reader sees them).

    Bracketed numbers are always removed: an answer's own markers are not part of its text. A
    lead-in left pointing at nothing ("see", "as shown in"), empty brackets and spaces left behind
    are tidied; the rest of the text is kept as it was.
    """
    view, origins = visible_text(text)
    cuts: list[tuple[int, int]] = []
    removed: list[str] = []
    for start, end, identifiers in sorted(_foreign_spans(view, allowed)):
        first = origins[start]
        last = origins[end] if end < len(origins) else len(text)
        if cuts and first <= cuts[-1][1]:
            cuts[-1] = (cuts[-1][0], max(last, cuts[-1][1]))
        else:
            cuts.append((first, last))
        removed.extend(identifiers)
    if not cuts:
        return text, []
    kept, last = [], 0
    for first, end in cuts:
        kept.append(text[last:first])
        last = end
    kept.append(text[last:])
    cleaned = _EMPTY_BRACKETS.sub("", "".join(kept))
    cleaned = _SPACES.sub(" ", _SPACE_BEFORE_PUNCTUATION.sub(r"\1", cleaned)).strip()
    return cleaned, removed


def scrub_sentences(
    sentences: Sequence[DraftSentence], evidence: Sequence[Evidence]
) -> list[DraftSentence]:
    """Copies of ``sentences`` without identifiers they do not cite, each noting what it lost.

    A sentence may name the PMID, DOI or link of a record it cites; every other citation marker,
    PMID, DOI and URL in its text is removed (:func:`strip_foreign_identifiers`). A sentence left
    without any word is dropped.
    """
    known = evidence_by_number(evidence)
    scrubbed: list[DraftSentence] = []
    for sentence in sentences:
        cited = [known[n].document for n in sentence.citations if n in known]
        text, removed = strip_foreign_identifiers(sentence.text, record_identifiers(cited))
        if not removed:
            scrubbed.append(sentence)
        elif re.search(r"[^\W\d_]", text):
            scrubbed.append(
                sentence.model_copy(
                    update={
                        "text": text,
                        "removed_identifiers": [*sentence.removed_identifiers, *removed],
                    }
                )
            )
    return scrubbed


def scrub_report(sentences: Sequence[DraftSentence]) -> list[ScrubbedSentence]:
    """The verification report's entries for ``sentences`` that lost identifiers."""
    return [
        ScrubbedSentence(sentence=s.text, removed=list(s.removed_identifiers))
        for s in sentences
        if s.removed_identifiers
    ]


__all__ = ["record_identifiers", "scrub_report", "scrub_sentences", "strip_foreign_identifiers"]
