"""Sentence-aware chunking of documents into passages sized for an embedding model.

Chunks are runs of whole sentences inside one section and one page, each within a token budget
measured by the caller's tokenizer, with a small sentence overlap between neighbours. Every chunk
keeps its exact character span, so ``document.text[chunk.start:chunk.end] == chunk.text`` and a
citation can quote the source verbatim.

The retrievers see more than the chunk: :func:`passage_text` puts the document's title on a line
above it, for the embedding model and for BM25 alike, so a chunk of an abstract keeps the context
its title gives (a question's terms are often split between the title and one sentence of the
abstract). The title's tokens come out of each chunk's budget.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from medgraph.errors import IngestError
from medgraph.knowledge.types import Chunk, Document

# Abbreviations (lower case, without the final period) after which a period never ends a sentence.
_ABBREVIATIONS = frozenset(
    {
        "al", "approx", "ca", "cf", "corp", "dept", "dr", "e.g", "eds", "eq", "eqs", "fig",
        "figs", "i.e", "inc", "incl", "jr", "ltd", "mr", "mrs", "ms", "pp", "prof", "ref", "refs",
        "resp", "sp", "spp", "sr", "st", "suppl", "univ", "viz", "vol", "vols", "vs",
    }
)  # fmt: skip
# Abbreviations that end no sentence only when a number follows ("No. 5", "Jan. 2010").
_NUMBER_ABBREVIATIONS = frozenset(
    {
        "no", "nos", "nr", "art", "ch", "chap", "sec", "sect", "tab", "jan", "feb", "mar",
        "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    }
)  # fmt: skip
_TERMINATOR = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")
# Blank lines and the start of list items split text whatever the punctuation.
_HARD_BREAK = re.compile(r"\n[^\S\n]*\n\s*|\n[^\S\n]*(?=(?:[-*+•]|\d{1,3}[.)])[^\S\n])")
_INITIALISM = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]|[^\W\d_]")
_OPENING_PUNCTUATION = "([{\"'“‘"
_NO_BOUNDARY_BEFORE = ",;:)]}"
_WORD = re.compile(r"\S+")
# Regions up to this many characters per budget token are first measured whole (English text runs
# about 4-5 characters per WordPiece token); longer ones go straight to sentence packing.
_WHOLE_REGION_CHARS_PER_TOKEN = 6
# A longer title is cut at a word boundary before it heads a passage.
_MAX_TITLE_CHARS = 300

PASSAGE_FORMAT = "title-line-1"
"""Names how :func:`passage_text` builds what is embedded and indexed; a change re-embeds."""


def passage_title(title: str | None) -> str:
    """The title line :func:`passage_text` puts above a chunk ('' when there is no title)."""
    line = " ".join((title or "").split())
    if len(line) > _MAX_TITLE_CHARS:
        line = line[:_MAX_TITLE_CHARS].rsplit(" ", 1)[0]
    return line


def passage_text(title: str | None, text: str) -> str:
    """What the retrievers read of a chunk: its document's title line, then the chunk's text."""
    line = passage_title(title)
    return f"{line}\n{text}" if line else text


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Return ``(start, end)`` spans of the sentences inside ``text[start:end]``.

    Rule-based: a sentence ends at ``.``, ``!``, ``?`` or ``…`` (with any closing quote or bracket)
    followed by whitespace and a character that is not lower case, except after abbreviations
    ("e.g.", "et al.", "vs.", "Fig."), initials ("J. Smith") and list numbers; blank lines and list
    items always split. Decimals such as "2.5" never split (no whitespace follows the period).
    Spans are offsets into ``text``: ordered, non-overlapping, with no surrounding whitespace.
    """
    stop = len(text) if end is None else end
    if not 0 <= start <= stop <= len(text):
        raise ValueError(
            f"span [{start}:{end}] is outside the text of length {len(text)}; "
            "pass 0 <= start <= end <= len(text)"
        )
    spans: list[tuple[int, int]] = []
    segment_start = start
    for hard_break in _HARD_BREAK.finditer(text, start, stop):
        _split_segment(text, segment_start, hard_break.start(), spans)
        segment_start = hard_break.end()
    _split_segment(text, segment_start, stop, spans)
    return spans


def _split_segment(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    sentence_start = start
    for terminator in _TERMINATOR.finditer(text, start, end):
        if _ends_sentence(text, sentence_start, terminator.start(), terminator.end(), end):
            _append_trimmed(text, sentence_start, terminator.end(), spans)
            sentence_start = terminator.end()
    _append_trimmed(text, sentence_start, end, spans)


def _ends_sentence(
    text: str, sentence_start: int, punctuation_start: int, punctuation_end: int, limit: int
) -> bool:
    """Whether the terminator at ``punctuation_start`` ends the current sentence."""
    following = punctuation_end
    while following < limit and text[following].isspace():
        following += 1
    next_char = text[following] if following < limit else ""
    if next_char and (next_char.islower() or next_char in _NO_BOUNDARY_BEFORE):
        return False
    if text[punctuation_start] != ".":
        return True
    token_start = punctuation_start
    while token_start > sentence_start and not text[token_start - 1].isspace():
        token_start -= 1
    token = text[token_start:punctuation_start].lstrip(_OPENING_PUNCTUATION)
    lowered = token.lower()
    if lowered in _ABBREVIATIONS or _INITIALISM.fullmatch(token):
        return False
    if lowered in _NUMBER_ABBREVIATIONS and next_char.isdigit():
        return False
    # a list number ("1. ", "iv. ") opening a sentence is not a sentence of its own
    opening = text[sentence_start:token_start].strip() == ""
    return not (opening and (token.isdigit() or re.fullmatch(r"[ivxlc]{1,5}", lowered)))


def _trimmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    """``(start, end)`` without surrounding whitespace, or ``None`` when only whitespace is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _append_trimmed(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    span = _trimmed(text, start, end)
    if span is not None:
        spans.append(span)


@dataclass(frozen=True)
class ChunkSpan:
    """Where one chunk lies in its document, before it becomes a :class:`Chunk`."""

    start: int
    end: int
    section: str | None
    page: int | None


@dataclass(frozen=True)
class _Region:
    start: int
    end: int
    section: str | None
    page: int | None


def chunk_id(source_id: str, text: str) -> str:
    """Content hash of a passage: the same ``text`` in the same document always gets the same id.

    :func:`chunk_document` hashes the passage (title line and chunk), so a changed title gives
    the chunk a new id and a new vector.
    """
    return hashlib.sha256(f"{source_id}\x00{text}".encode()).hexdigest()[:32]


def chunk_document(
    document: Document,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    overlap_sentences: int = 1,
) -> list[Chunk]:
    """Cut ``document`` into sentence-aligned chunks whose passages fit ``max_tokens`` tokens.

    A passage is the chunk under its document's title line (:func:`passage_text`), so each
    chunk's budget is ``max_tokens`` less the title's tokens; a title that would take more than
    half of ``max_tokens`` takes only half (the embedding model then truncates the passage's end).
    ``count_tokens`` measures a string with the embedding model's tokenizer. Chunks never straddle
    two sections or two pages; consecutive chunks of a section share ``overlap_sentences``
    sentences; a sentence longer than the budget is split at word boundaries (and a word longer
    than the budget between characters). A chunk whose text repeats an earlier chunk of the same
    document (same id) is dropped, so ids are unique within the result. Empty documents give ``[]``.
    """
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for span in chunk_spans(document, count_tokens, max_tokens, overlap_sentences):
        text = document.text[span.start : span.end]
        identifier = chunk_id(document.source_id, passage_text(document.title, text))
        if identifier in seen:
            continue
        seen.add(identifier)
        chunks.append(
            Chunk(
                chunk_id=identifier,
                source_id=document.source_id,
                index=len(chunks),
                text=text,
                start=span.start,
                end=span.end,
                section=span.section,
                page=span.page,
            )
        )
    return chunks


def chunk_spans(
    document: Document,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    overlap_sentences: int = 1,
) -> list[ChunkSpan]:
    """The spans :func:`chunk_document` cuts, in document order, before duplicates are dropped."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if overlap_sentences < 0:
        raise ValueError(f"overlap_sentences must be 0 or more, got {overlap_sentences!r}")
    budget = _Budget(document.text, count_tokens, _text_budget(document, count_tokens, max_tokens))
    spans: list[ChunkSpan] = []
    for region in _regions(document):
        if region.end - region.start <= _WHOLE_REGION_CHARS_PER_TOKEN * max_tokens:
            # a short section usually fits whole: one count instead of one per sentence
            whole = _trimmed(document.text, region.start, region.end)
            if whole is None:
                continue
            if budget.fits(*whole):
                spans.append(ChunkSpan(whole[0], whole[1], region.section, region.page))
                continue
        units: list[_Unit] = []
        for sentence in split_sentences(document.text, region.start, region.end):
            unit = budget.unit(*sentence)
            if budget.fits_alone(unit):
                units.append(unit)
            else:
                units.extend(_split_long_sentence(budget, unit))
        for start, end in _pack(budget, units, overlap_sentences):
            spans.append(ChunkSpan(start, end, region.section, region.page))
    return spans


def _text_budget(document: Document, count_tokens: Callable[[str], int], max_tokens: int) -> int:
    """Tokens left for chunk text once the title line (and its line break) is in the passage."""
    line = passage_title(document.title)
    if not line:
        return max_tokens
    title_cost = count_tokens(line + "\n") - max(0, count_tokens(""))
    return max(max_tokens - title_cost, (max_tokens + 1) // 2)


@dataclass(frozen=True)
class _Unit:
    """A sentence (or piece of one) with its token cost net of the tokenizer's fixed overhead."""

    start: int
    end: int
    cost: int


class _Budget:
    """Measures spans of one text against the token budget.

    Tokenizer calls dominate the run time, so runs of units are first sized from the sum of their
    own counts (exact for WordPiece, whose tokens never cross whitespace) and then confirmed with
    one real count; only confirmed spans are ever returned.
    """

    def __init__(self, text: str, count_tokens: Callable[[str], int], max_tokens: int) -> None:
        self.text = text
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens
        # special tokens ([CLS], [SEP], ...) counted once per string whatever its length
        self.overhead = max(0, count_tokens(""))

    def unit(self, start: int, end: int) -> _Unit:
        return _Unit(start, end, max(0, self.count_tokens(self.text[start:end]) - self.overhead))

    def fits_alone(self, unit: _Unit) -> bool:
        return unit.cost + self.overhead <= self.max_tokens

    def fits(self, start: int, end: int) -> bool:
        return self.count_tokens(self.text[start:end]) <= self.max_tokens

    def too_small_error(self, position: int) -> ValueError:
        character = self.text[position]
        return ValueError(
            f"max_tokens={self.max_tokens} is too small: the single character {character!r} "
            f"counts as {self.count_tokens(character)} tokens; raise max_tokens"
        )


def _checked_ranges(
    document: Document, ranges: tuple[tuple[str, int, int], ...] | tuple[tuple[int, int, int], ...]
) -> list[tuple[str | int, int, int]]:
    """Ranges sorted by start, checked to lie inside the text and not to overlap."""
    ordered: list[tuple[str | int, int, int]] = sorted(ranges, key=lambda item: (item[1], item[2]))
    previous_end = 0
    for name, start, end in ordered:
        if not 0 <= start <= end <= len(document.text) or start < previous_end:
            raise IngestError(
                f"document {document.source_id}: range {name!r} [{start}:{end}] lies outside its "
                f"text (length {len(document.text)}) or overlaps the previous one; fix its reader"
            )
        previous_end = end
    return ordered


def _regions(document: Document) -> list[_Region]:
    """Pieces of the text that lie inside one section and one page (the whole text if neither)."""
    length = len(document.text)
    sections = _checked_ranges(document, document.sections) or [("", 0, length)]
    pages = _checked_ranges(document, document.pages) or [(0, 0, length)]
    regions: list[_Region] = []
    for label, section_start, section_end in sections:
        for number, page_start, page_end in pages:
            start, end = max(section_start, page_start), min(section_end, page_end)
            if start < end:
                regions.append(
                    _Region(
                        start,
                        end,
                        str(label) or None,
                        int(number) if document.pages else None,
                    )
                )
    return regions


def _furthest(first: int, last: int, fits: Callable[[int], bool]) -> int:
    """Largest ``k`` in ``[first, last]`` with ``fits(k)``, given ``fits(first)``.

    Galloping then binary search: token counts grow (almost always) with the span, and every value
    returned was actually measured, so the result fits even where the count is not monotone.
    """
    best, step, bad = first, 1, last + 1
    while best + step <= last:
        if fits(best + step):
            best += step
            step *= 2
        else:
            bad = best + step
            break
    while bad - best > 1:
        middle = (best + bad) // 2
        if fits(middle):
            best = middle
        else:
            bad = middle
    return best


def _pack(budget: _Budget, units: list[_Unit], overlap: int) -> list[tuple[int, int]]:
    """Group consecutive units (each fitting alone) into the longest runs that fit the budget."""
    packed: list[tuple[int, int]] = []
    first = 0
    while first < len(units):
        last = _last_fitting(budget, units, first)
        packed.append((units[first].start, units[last].end))
        if last == len(units) - 1:
            break
        # the next run repeats up to `overlap` units, fewer where they leave no room for new text
        following = max(first + 1, last + 1 - overlap)
        while following <= last and not budget.fits(units[following].start, units[last + 1].end):
            following += 1
        first = following
    return packed


def _last_fitting(budget: _Budget, units: list[_Unit], first: int) -> int:
    """Last unit of the longest run from ``first`` that fits the budget (``units[first]`` fits)."""
    allowance = budget.max_tokens - budget.overhead
    estimate, total = first, units[first].cost
    while estimate + 1 < len(units) and total + units[estimate + 1].cost <= allowance:
        estimate += 1
        total += units[estimate].cost
    if estimate == first or budget.fits(units[first].start, units[estimate].end):
        return estimate
    # the sum under-counted (a tokenizer whose tokens cross whitespace): search with real counts
    return _furthest(first, estimate - 1, lambda k: budget.fits(units[first].start, units[k].end))


def _split_long_sentence(budget: _Budget, sentence: _Unit) -> list[_Unit]:
    """Split a sentence over budget at word boundaries, and words over budget between characters."""
    words: list[_Unit] = []
    for match in _WORD.finditer(budget.text, sentence.start, sentence.end):
        word = budget.unit(match.start(), match.end())
        if budget.fits_alone(word):
            words.append(word)
        else:
            words.extend(_split_long_word(budget, word))
    return [budget.unit(start, end) for start, end in _pack(budget, words, overlap=0)]


def _split_long_word(budget: _Budget, word: _Unit) -> list[_Unit]:
    pieces: list[_Unit] = []
    position = word.start
    while position < word.end:
        if not budget.fits(position, position + 1):
            raise budget.too_small_error(position)
        piece_end = _furthest(position + 1, word.end, partial(_fits_from, budget, position))
        pieces.append(budget.unit(position, piece_end))
        position = piece_end
    return pieces


def _fits_from(budget: _Budget, start: int, end: int) -> bool:
    return budget.fits(start, end)
