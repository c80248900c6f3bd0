"""BM25 over the indexed chunks, kept beside the Chroma store as immutable, memory-mapped segments.

Layout of ``index_dir/bm25``::

    current.json        pointer to the live manifest (replaced atomically)
    m<gen>-<uid>.json   manifest: generation, tokenizer fingerprint, segments and their tombstones
    s-<uid>/            one segment (never modified): term postings and the chunk table of its rows
    d-<uid>.npy         deleted rows of one segment (a later delete writes a new file)

Adding chunks writes one new segment, so its cost grows with the chunks added, not the index.
Deleting or replacing a chunk marks its row deleted. Segments of similar size are merged (four of a
tier into one, as in a log-structured merge), which also drops deleted rows.

Scoring is BM25 (Lucene variant, as bm25s computes it) with k1 1.2 and b 0.5 (see ``K1`` and ``B``)
and corpus-wide statistics taken at query time. Segments keep raw term frequencies; document
frequency, chunk count and average length are summed over the live rows of every segment, so a
search over many segments scores every chunk as one index built from scratch would. Ties are broken
by chunk id.

Terms are stored as 64-bit hashes (blake2b) in sorted arrays, so the vocabulary needs no Python
dictionary and is memory-mapped like the postings.

Beside the chunks, a second set of segments indexes whole documents (one row per source id, its
title and the text its chunks cover; see :attr:`LexicalIndex.documents`). It is kept the same way
(new segments, tombstones, merges) and named by the same manifest, so both levels always describe
one generation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

_WORD = re.compile(r"\w+", re.UNICODE)
_MISSING_YEAR = -1
_POINTER = "current.json"
FORMAT = 3
"""Version of the on-disk layout; a folder of another version is rebuilt from the store."""
K1 = 1.2
"""Term-frequency saturation: Robertson's classic 1.2 (bm25s defaults to 1.5)."""
B = 0.5
"""Length normalisation, weaker than the usual 0.75: chunks are cut to the embedder's window, so
a longer chunk is a fuller passage rather than a more verbose one, and should not be penalised as
much. On BioASQ dev, k1 1.2 / b 0.5 lifts lexical MRR@10 from 0.857 to 0.870 (on each half)."""
MERGE_FACTOR = 4
"""Segments per size tier (powers of this factor) before the tier is merged into one."""
_MAX_DELETED_FRACTION = 0.3
_MAX_TF = np.iinfo(np.uint16).max
_SEGMENT_ARRAYS = ("terms", "offsets", "rows", "tfs", "lengths", "ids", "sources", "years")
_ORDER_ARRAYS = ("id_order", "source_order")

IntArray = npt.NDArray[np.int64]
# One query term: idf x repeats, and (rows, term frequencies) of its live postings per segment.
_TermPostings = tuple[float, list[tuple[npt.NDArray[np.int32], npt.NDArray[np.uint16]]]]


# English function words that bm25s's 33-word list lacks: the interrogatives, auxiliaries and
# modals that open most questions ("Which gene...", "Does X cause...") and carry no topic.
_QUESTION_WORDS = frozenset(
    {
        "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "whether",
        "do", "does", "did", "am", "been", "being", "has", "have", "had", "can", "could",
        "should", "would", "may", "might", "must", "shall", "its", "from", "than", "also",
    }
)  # fmt: skip


@functools.cache
def _analyzer() -> tuple[frozenset[str], Callable[[list[str]], list[str]]]:
    from bm25s.stopwords import STOPWORDS_EN
    from Stemmer import Stemmer

    return frozenset(STOPWORDS_EN) | _QUESTION_WORDS, Stemmer("english").stemWords


def tokenize(text: str) -> list[str]:
    """BM25 terms of ``text``: lowercase word tokens, English stopwords dropped, Snowball-stemmed.

    Stemming lets "expressed" in a question match "expression" in an abstract, and "mutations"
    match "mutation". Stopwords are bm25s's English list plus question and auxiliary words.
    """
    stopwords, stem = _analyzer()
    return stem([token for token in _WORD.findall(text.lower()) if token not in stopwords])


_PROBE = (
    "Which patients' IL-6 levels were 2.5 mg/dL? How does running affect studies of Tumours in "
    "children?"
)


def tokenizer_fingerprint() -> str:
    """A short hash of what :func:`tokenize` makes of a probe text.

    Saved segments record it; when tokenisation changes, the saved index no longer matches and is
    rebuilt from the store instead of mixing two tokenisations.
    """
    return hashlib.sha256("\x00".join(tokenize(_PROBE)).encode()).hexdigest()[:16]


def _term_hash(term: str) -> int:
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=8).digest(), "little")


def _encode(values: Iterable[str]) -> npt.NDArray[np.bytes_]:
    encoded = [value.encode() for value in values]
    width = max((len(value) for value in encoded), default=1) or 1
    return np.array(encoded, dtype=f"S{width}")


def _as_bytes(values: Iterable[str]) -> npt.NDArray[np.bytes_]:
    encoded = [value.encode() for value in values]
    return np.array(encoded) if encoded else np.empty(0, dtype="S1")


@dataclass(frozen=True)
class _Segment:
    """One immutable run of chunks: CSR postings by term hash plus the chunk table."""

    name: str
    terms: npt.NDArray[np.uint64]  # sorted term hashes
    offsets: IntArray  # postings of terms[i] are rows[offsets[i]:offsets[i + 1]]
    rows: npt.NDArray[np.int32]
    tfs: npt.NDArray[np.uint16]
    lengths: npt.NDArray[np.int32]  # tokens per row
    ids: npt.NDArray[np.bytes_]
    sources: npt.NDArray[np.bytes_]
    years: npt.NDArray[np.int32]
    id_order: npt.NDArray[np.int32]  # argsort of ids
    source_order: npt.NDArray[np.int32]  # argsort of sources
    deleted: npt.NDArray[np.int32]  # sorted deleted rows
    deleted_file: str | None = None
    saved: bool = False

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def live(self) -> int:
        return self.size - len(self.deleted)

    @property
    def alive(self) -> npt.NDArray[np.bool_] | None:
        """True per live row, or None when no row is deleted."""
        if not len(self.deleted):
            return None
        alive = np.ones(self.size, dtype=bool)
        alive[self.deleted] = False
        return alive

    def live_length(self) -> int:
        total = int(self.lengths.sum(dtype=np.int64))
        if len(self.deleted):
            total -= int(self.lengths[self.deleted].sum(dtype=np.int64))
        return total

    def rows_of(self, keys: npt.NDArray[np.bytes_], column: str) -> npt.NDArray[np.int32]:
        """Rows whose ``column`` ("ids" or "sources") is one of ``keys`` (deleted rows too)."""
        values = self.ids if column == "ids" else self.sources
        order = self.id_order if column == "ids" else self.source_order
        if not self.size or not len(keys):
            return np.empty(0, dtype=np.int32)
        lo = np.searchsorted(values, keys, side="left", sorter=order)
        hi = np.searchsorted(values, keys, side="right", sorter=order)
        counts = hi - lo
        total = int(counts.sum())
        if not total:
            return np.empty(0, dtype=np.int32)
        # the positions lo[k] .. hi[k] - 1 of every key, in one array
        shift = np.repeat(lo - (np.cumsum(counts) - counts), counts)
        return np.unique(order[np.arange(total) + shift]).astype(np.int32)

    def postings(self, term: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint16]]:
        at = int(np.searchsorted(self.terms, np.uint64(term)))
        if at >= len(self.terms) or int(self.terms[at]) != term:
            empty = np.empty(0, dtype=np.int32)
            return empty, np.empty(0, dtype=np.uint16)
        start, end = int(self.offsets[at]), int(self.offsets[at + 1])
        return self.rows[start:end], self.tfs[start:end]


def _segment_from_postings(
    hashes: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int32],
    tfs: npt.NDArray[np.uint16],
    lengths: npt.NDArray[np.int32],
    ids: npt.NDArray[np.bytes_],
    sources: npt.NDArray[np.bytes_],
    years: npt.NDArray[np.int32],
) -> _Segment:
    order = np.lexsort((rows, hashes))
    hashes, rows, tfs = hashes[order], rows[order], tfs[order]
    terms, starts = np.unique(hashes, return_index=True)
    offsets = np.append(starts, len(hashes)).astype(np.int64)
    return _Segment(
        name=f"s-{uuid.uuid4().hex[:12]}",
        terms=terms.astype(np.uint64),
        offsets=offsets,
        rows=rows.astype(np.int32),
        tfs=tfs.astype(np.uint16),
        lengths=lengths.astype(np.int32),
        ids=ids,
        sources=sources,
        years=years.astype(np.int32),
        id_order=np.argsort(ids, kind="stable").astype(np.int32),
        source_order=np.argsort(sources, kind="stable").astype(np.int32),
        deleted=np.empty(0, dtype=np.int32),
    )


def _build_segment(
    ids: Sequence[str],
    texts: Sequence[str],
    source_ids: Sequence[str],
    years: Sequence[int | None],
) -> _Segment:
    vocabulary: dict[str, int] = {}
    term_ids: list[int] = []
    rows: list[int] = []
    tfs: list[int] = []
    lengths = np.zeros(len(texts), dtype=np.int32)
    for row, text in enumerate(texts):
        counts = Counter(tokenize(text))
        lengths[row] = sum(counts.values())
        for token, count in counts.items():
            term_ids.append(vocabulary.setdefault(token, len(vocabulary)))
            rows.append(row)
            tfs.append(min(count, _MAX_TF))
    term_hashes = np.array([_term_hash(term) for term in vocabulary], dtype=np.uint64)
    return _segment_from_postings(
        term_hashes[np.asarray(term_ids, dtype=np.int64)],
        np.asarray(rows, dtype=np.int32),
        np.asarray(tfs, dtype=np.uint16),
        lengths,
        _encode(ids),
        _encode(source_ids),
        np.array([_MISSING_YEAR if y is None else int(y) for y in years], dtype=np.int32),
    )


def _merge_segments(segments: Sequence[_Segment]) -> _Segment:
    """One segment holding the live rows of ``segments`` (in order), deleted rows dropped."""
    hashes, rows, tfs, lengths, ids, sources, years = [], [], [], [], [], [], []
    base = 0
    for segment in segments:
        alive = segment.alive
        keep = np.arange(segment.size) if alive is None else np.flatnonzero(alive)
        new_row = np.full(segment.size, -1, dtype=np.int64)
        new_row[keep] = np.arange(len(keep)) + base
        term_of = np.repeat(segment.terms, np.diff(segment.offsets))
        mapped = new_row[segment.rows]
        live = mapped >= 0
        hashes.append(term_of[live])
        rows.append(mapped[live].astype(np.int32))
        tfs.append(np.asarray(segment.tfs)[live])
        lengths.append(segment.lengths[keep])
        ids.append(segment.ids[keep])
        sources.append(segment.sources[keep])
        years.append(segment.years[keep])
        base += len(keep)
    return _segment_from_postings(
        np.concatenate(hashes).astype(np.uint64),
        np.concatenate(rows),
        np.concatenate(tfs).astype(np.uint16),
        np.concatenate(lengths),
        np.concatenate(ids),
        np.concatenate(sources),
        np.concatenate(years),
    )


def _merge_policy(segments: list[_Segment]) -> list[_Segment]:
    """Merge every size tier that holds ``MERGE_FACTOR`` segments; rewrite mostly-deleted ones."""
    segments = [segment for segment in segments if segment.live > 0]
    while True:
        tiers: dict[int, list[int]] = {}
        for position, segment in enumerate(segments):
            tier = int(math.log(max(segment.live, 1), MERGE_FACTOR))
            tiers.setdefault(tier, []).append(position)
        full = [positions for _, positions in sorted(tiers.items()) if len(positions) >= 4]
        if full:
            group = full[0]
        else:
            group = [
                position
                for position, segment in enumerate(segments)
                if len(segment.deleted) > _MAX_DELETED_FRACTION * segment.size
            ][:1]
        if not group:
            return segments
        merged = _merge_segments([segments[position] for position in group])
        segments = [s for p, s in enumerate(segments) if p not in group] + [merged]


class LexicalIndex:
    """BM25 over chunk texts in segments, with the chunk table needed to filter and map hits."""

    def __init__(
        self,
        segments: Sequence[_Segment],
        generation: int,
        *,
        store_id: str | None = None,
        tokenizer: str | None = None,
        documents: LexicalIndex | None = None,
    ) -> None:
        self._segments = list(segments)
        self.generation = generation
        self.store_id = store_id
        """Identity of the Chroma collection these chunks came from (None: not recorded)."""
        self.tokenizer = tokenizer or tokenizer_fingerprint()
        self.documents = documents
        """BM25 over whole documents (row id = source id), or None where none was given."""
        self._alive = [segment.alive for segment in self._segments]
        self._live = sum(segment.live for segment in self._segments)
        self._live_length = sum(segment.live_length() for segment in self._segments)
        self._starts = np.cumsum([0] + [segment.size for segment in self._segments])
        self._norm_cache: dict[int, npt.NDArray[np.float64]] = {}

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        texts: Sequence[str],
        source_ids: Sequence[str],
        years: Sequence[int | None],
        generation: int,
        *,
        store_id: str | None = None,
        documents: Mapping[str, tuple[str, int | None]] | None = None,
    ) -> LexicalIndex:
        """Index ``texts`` (aligned with ``ids``, ``source_ids`` and ``years``) as one segment.

        ``documents`` (source id -> whole text, year) builds the document level the same way.
        """
        if not len(ids) == len(texts) == len(source_ids) == len(years):
            raise ValueError("ids, texts, source_ids and years must have the same length")
        segments = [_build_segment(ids, texts, source_ids, years)] if ids else []
        level = None
        if documents is not None:
            level = cls.build(
                list(documents),
                [text for text, _ in documents.values()],
                list(documents),
                [year for _, year in documents.values()],
                generation,
            )
        return cls(segments, generation, store_id=store_id, documents=level)

    def updated(
        self,
        *,
        generation: int,
        delete: Iterable[str] = (),
        ids: Sequence[str] = (),
        texts: Sequence[str] = (),
        source_ids: Sequence[str] = (),
        years: Sequence[int | None] = (),
        store_id: str | None = None,
        documents: Mapping[str, tuple[str, int | None] | None] | None = None,
    ) -> LexicalIndex:
        """A new index: this one without ``delete`` (chunk ids), plus the given chunks.

        An added id that is already indexed replaces the old row. ``documents`` updates the
        document level the same way: source id -> (whole text, year) adds or replaces that
        document's row, -> None deletes it. Costs O(changes), plus merging segments when a size
        tier fills up. This index is left as it was (searches may go on).
        """
        if not len(ids) == len(texts) == len(source_ids) == len(years):
            raise ValueError("ids, texts, source_ids and years must have the same length")
        level = self.documents
        if documents is not None:
            level = level or LexicalIndex([], generation, tokenizer=self.tokenizer)
            kept = {source: entry for source, entry in documents.items() if entry is not None}
            level = level.updated(
                generation=generation,
                delete=[source for source, entry in documents.items() if entry is None],
                ids=list(kept),
                texts=[text for text, _ in kept.values()],
                source_ids=list(kept),
                years=[year for _, year in kept.values()],
            )
        elif level is not None:
            level = LexicalIndex(level._segments, generation, tokenizer=self.tokenizer)
        doomed = _as_bytes({*delete, *ids}) if (ids or delete) else None
        segments: list[_Segment] = []
        for segment in self._segments:
            if doomed is None:
                segments.append(segment)
                continue
            rows = segment.rows_of(doomed, "ids")
            fresh = np.setdiff1d(rows, segment.deleted, assume_unique=True)
            if not len(fresh):
                segments.append(segment)
                continue
            deleted = np.union1d(segment.deleted, fresh).astype(np.int32)
            segments.append(replace(segment, deleted=deleted, deleted_file=None))
        if ids:
            segments.append(_build_segment(ids, texts, source_ids, years))
        return LexicalIndex(
            _merge_policy(segments),
            generation,
            store_id=store_id if store_id is not None else self.store_id,
            tokenizer=self.tokenizer,
            documents=level,
        )

    def _norms(self, position: int) -> npt.NDArray[np.float64]:
        """BM25's length normalisation k1 (1 - b + b dl / avgdl) per row of one segment."""
        norm = self._norm_cache.get(position)
        if norm is None:
            average = self._live_length / self._live
            lengths = np.asarray(self._segments[position].lengths, dtype=np.float64)
            norm = K1 * (1 - B + B * lengths / average)
            self._norm_cache[position] = norm
        return norm

    def __len__(self) -> int:
        return self._live

    @property
    def segment_count(self) -> int:
        """Segments searched together."""
        return len(self._segments)

    @property
    def ids(self) -> list[str]:
        """Live chunk ids, segment by segment (O(chunks): for checks, not the query path)."""
        return [value.decode() for value in self._live_column("ids").tolist()]

    def _live_column(self, column: str) -> npt.NDArray[np.bytes_]:
        parts = []
        for segment, alive in zip(self._segments, self._alive, strict=True):
            values = segment.ids if column == "ids" else segment.sources
            parts.append(values if alive is None else values[alive])
        return np.concatenate(parts) if parts else np.empty(0, dtype="S1")

    @property
    def document_count(self) -> int:
        """Distinct source ids among the live chunks."""
        return len(np.unique(self._live_column("sources")))

    def live_sources(self) -> set[str]:
        """Distinct source ids of the live rows (O(rows): for checks, not the query path)."""
        return {value.decode() for value in np.unique(self._live_column("sources")).tolist()}

    def live_ids_of_sources(self, source_ids: Iterable[str]) -> set[str]:
        """Live chunk ids of the given documents (O(documents asked), via sorted source ids)."""
        keys = _as_bytes(source_ids)
        found: set[str] = set()
        for segment, alive in zip(self._segments, self._alive, strict=True):
            rows = segment.rows_of(keys, "sources")
            if alive is not None:
                rows = rows[alive[rows]]
            found.update(value.decode() for value in segment.ids[rows].tolist())
        return found

    def sources_of(self, chunk_ids: Iterable[str]) -> dict[str, str]:
        """Source id of each live chunk among ``chunk_ids`` (absent ids are left out)."""
        keys = _as_bytes(chunk_ids)
        found: dict[str, str] = {}
        for segment, alive in zip(self._segments, self._alive, strict=True):
            rows = segment.rows_of(keys, "ids")
            if alive is not None:
                rows = rows[alive[rows]]
            for chunk_id, source_id in zip(
                segment.ids[rows].tolist(), segment.sources[rows].tolist(), strict=True
            ):
                found[chunk_id.decode()] = source_id.decode()
        return found

    def mask(
        self,
        *,
        year_min: int | None = None,
        year_max: int | None = None,
        source_ids: Iterable[str] | None = None,
    ) -> npt.NDArray[np.float32] | None:
        """A 0/1 weight per row that keeps only chunks passing the filter (None: no filter)."""
        if year_min is None and year_max is None and source_ids is None:
            return None
        wanted = _as_bytes(source_ids) if source_ids is not None else None
        parts = []
        for segment in self._segments:
            keep = np.ones(segment.size, dtype=bool)
            if year_min is not None or year_max is not None:
                keep &= segment.years != _MISSING_YEAR
                if year_min is not None:
                    keep &= segment.years >= year_min
                if year_max is not None:
                    keep &= segment.years <= year_max
            if wanted is not None:
                chosen = np.zeros(segment.size, dtype=bool)
                chosen[segment.rows_of(wanted, "sources")] = True
                keep &= chosen
            parts.append(keep)
        if not parts:
            return np.empty(0, dtype=np.float32)
        return np.concatenate(parts).astype(np.float32)

    def search(
        self, query: str | Sequence[str], k: int, mask: npt.NDArray[np.float32] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` best chunks for ``query`` as (chunk id, BM25 score); zero scores dropped.

        ``query`` is text, or the terms :func:`tokenize` made of it (to tokenise a query once).
        """
        tokens = tokenize(query) if isinstance(query, str) else list(query)
        return self.search_tokens(tokens, k, mask)

    def search_tokens(
        self, tokens: Sequence[str], k: int, mask: npt.NDArray[np.float32] | None = None
    ) -> list[tuple[str, float]]:
        """:meth:`search` for a query already passed through :func:`tokenize`."""
        if not self._live or k < 1 or not tokens:
            return []
        per_term = self._weighted_postings(tokens)
        if not per_term:
            return []
        candidates: list[tuple[npt.NDArray[np.bytes_], npt.NDArray[np.float64]]] = []
        for position, segment in enumerate(self._segments):
            touched = [(weight, lists[position]) for weight, lists in per_term]
            if not any(len(rows) for _, (rows, _) in touched):
                continue
            norm = self._norms(position)
            scores = np.zeros(segment.size, dtype=np.float64)
            for weight, (rows, tfs) in touched:
                # a row appears once per term, so fancy-index addition is exact; terms are added
                # in query order whatever the segments, so scores equal a single-segment index's
                tf = tfs.astype(np.float64)
                scores[rows] += weight * tf / (tf + norm[rows])
            if mask is not None:
                start = int(self._starts[position])
                scores *= mask[start : start + segment.size]
            hits = np.flatnonzero(scores > 0)
            found = scores[hits]
            if len(found) > k:
                cut = np.partition(found, len(found) - k)[len(found) - k]
                keep = found >= cut
                hits, found = hits[keep], found[keep]
            candidates.append((segment.ids[hits], found))
        if not candidates:
            return []
        ids = np.concatenate([found for found, _ in candidates])
        scores = np.concatenate([score for _, score in candidates])
        order = np.lexsort((ids, -scores))[:k]
        return [(ids[i].decode(), float(scores[i])) for i in order.tolist()]

    def _weighted_postings(self, tokens: Sequence[str]) -> list[_TermPostings]:
        """Per query term present in the index: idf times its repeats, and its live postings in
        every segment (in segment order)."""
        per_term: list[_TermPostings] = []
        for token, repeats in Counter(tokens).items():  # a repeated word counts once per repeat
            term = _term_hash(token)
            lists = []
            frequency = 0
            for segment, alive in zip(self._segments, self._alive, strict=True):
                rows, tfs = segment.postings(term)
                if alive is not None and len(rows):
                    live = alive[rows]
                    rows, tfs = rows[live], tfs[live]
                frequency += len(rows)
                lists.append((rows, tfs))
            if frequency:
                idf = math.log(1 + (self._live - frequency + 0.5) / (frequency + 0.5))
                per_term.append((idf * repeats, lists))
        return per_term

    def best_scores(
        self,
        tokens: Sequence[str],
        source_ids: Iterable[str],
        mask: npt.NDArray[np.float32] | None = None,
    ) -> dict[str, tuple[str, float]]:
        """The best row (its id and BM25 score) of each of ``source_ids`` among its live rows
        that ``mask`` keeps.

        A source whose rows match no query term scores 0.0 (with its first row in id order); one
        with no such rows is left out. Ties go to the smaller row id, as in :meth:`search_tokens`.
        Only the rows of the sources asked are scored (O(their rows + the terms' postings)), and
        each equals the score :meth:`search_tokens` gives that row. On the document level (one row
        per source) this is each document's score.
        """
        keys = _as_bytes(source_ids)
        if not self._live or not len(keys):
            return {}
        per_term = self._weighted_postings(tokens)
        best: dict[str, tuple[str, float]] = {}
        for position, (segment, alive) in enumerate(zip(self._segments, self._alive, strict=True)):
            rows = segment.rows_of(keys, "sources")  # sorted
            if alive is not None:
                rows = rows[alive[rows]]
            if mask is not None:
                start = int(self._starts[position])
                rows = rows[mask[start + rows] > 0]
            if not len(rows):
                continue
            norm = self._norms(position)
            scores = np.zeros(len(rows), dtype=np.float64)
            for weight, lists in per_term:
                posted, tfs = lists[position]
                at = np.minimum(np.searchsorted(rows, posted), len(rows) - 1)
                match = rows[at] == posted
                tf = tfs[match].astype(np.float64)
                scores[at[match]] += weight * tf / (tf + norm[posted[match]])
            for source, row_id, score in zip(
                segment.sources[rows].tolist(),
                segment.ids[rows].tolist(),
                scores.tolist(),
                strict=True,
            ):
                name, row_name = source.decode(), row_id.decode()
                held = best.get(name)
                if held is None or (-score, row_name) < (-held[1], held[0]):
                    best[name] = (row_name, score)
        return best

    # -- persistence ---------------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        """Write new segments and tombstones under ``folder``; point ``current.json`` at them.

        Segments this folder holds already are not written again. Files named by neither this
        manifest nor the previous one are removed (a reader still loading the previous one finds
        its files; a process that memory-mapped older ones keeps reading them).
        """
        folder.mkdir(parents=True, exist_ok=True)
        saved = _write_segments(folder, self._segments)
        documents = None
        if self.documents is not None:
            documents = _write_segments(folder, self.documents._segments)
        manifest = {
            "format": FORMAT,
            "generation": self.generation,
            "store_id": self.store_id,
            "tokenizer": self.tokenizer,
            "segments": [_entry(segment) for segment in saved],
            "documents": None if documents is None else [_entry(s) for s in documents],
        }
        name = f"m{self.generation:06d}-{uuid.uuid4().hex[:8]}.json"
        (folder / name).write_text(json.dumps(manifest), encoding="utf-8")
        previous = _read_pointer(folder)
        pointer = folder / f".{_POINTER}.{uuid.uuid4().hex[:8]}"
        pointer.write_text(
            json.dumps({"manifest": name, "generation": self.generation, "previous": previous}),
            encoding="utf-8",
        )
        os.replace(pointer, folder / _POINTER)
        _collect_garbage(folder, keep=[name, previous])
        # Serve from the memory-mapped files from now on, not from the arrays built in memory.
        self._segments = [_load_segment(folder, _entry(segment)) for segment in saved]
        if self.documents is not None and documents is not None:
            self.documents._segments = [_load_segment(folder, _entry(s)) for s in documents]
        return folder / name

    @staticmethod
    def saved_generation(folder: Path) -> int | None:
        """The generation ``folder`` currently holds, or None if it holds none."""
        try:
            pointer = json.loads((folder / _POINTER).read_text(encoding="utf-8"))
            return int(pointer["generation"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex | None:
        """The saved index under ``folder`` (memory-mapped), or None when absent or unreadable.

        A folder of another layout version or another tokenisation also reads as None, so the
        caller rebuilds it from the store.
        """
        for _ in range(3):  # a writer may replace the manifest between reading it and its files
            name = _read_pointer(folder)
            if name is None:
                return None
            try:
                manifest = json.loads((folder / name).read_text(encoding="utf-8"))
                if manifest.get("format") != FORMAT:
                    return None
                if manifest.get("tokenizer") != tokenizer_fingerprint():
                    return None
                generation = int(manifest["generation"])
                segments = [_load_segment(folder, entry) for entry in manifest["segments"]]
                documents = None
                if manifest.get("documents") is not None:
                    documents = cls(
                        [_load_segment(folder, entry) for entry in manifest["documents"]],
                        generation,
                        tokenizer=manifest["tokenizer"],
                    )
                return cls(
                    segments,
                    generation,
                    store_id=manifest.get("store_id"),
                    tokenizer=manifest["tokenizer"],
                    documents=documents,
                )
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError):
                return None
        return None


def _read_pointer(folder: Path) -> str | None:
    try:
        pointer = json.loads((folder / _POINTER).read_text(encoding="utf-8"))
        return str(pointer["manifest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _entry(segment: _Segment) -> dict[str, Any]:
    return {"dir": segment.name, "rows": segment.size, "deleted": segment.deleted_file}


def _write_segments(folder: Path, segments: Sequence[_Segment]) -> list[_Segment]:
    """Write the segments and tombstones ``folder`` lacks; the segments marked saved."""
    saved: list[_Segment] = []
    for segment in segments:
        # A segment is written unless this folder holds it (another process sharing the
        # folder may have removed it since, or this index was saved elsewhere).
        if not (segment.saved and (folder / segment.name).is_dir()):
            target = folder / segment.name
            staging = folder / f".{segment.name}.tmp"
            staging.mkdir()
            for name in (*_SEGMENT_ARRAYS, *_ORDER_ARRAYS):
                np.save(staging / f"{name}.npy", np.asarray(getattr(segment, name)))
            os.replace(staging, target)
        deleted_file = segment.deleted_file
        if deleted_file is not None and not (folder / deleted_file).is_file():
            deleted_file = None
        if deleted_file is None and len(segment.deleted):
            deleted_file = f"d-{uuid.uuid4().hex[:12]}.npy"
            _atomic_save(folder / deleted_file, segment.deleted)
        saved.append(replace(segment, saved=True, deleted_file=deleted_file))
    return saved


def _atomic_save(path: Path, array: npt.NDArray[Any]) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    with staging.open("wb") as handle:
        np.save(handle, array)
    os.replace(staging, path)


def _load_segment(folder: Path, entry: dict[str, Any]) -> _Segment:
    target = folder / str(entry["dir"])
    # Plain ndarray views of the memory maps: same pages, without np.memmap's per-slice cost.
    arrays = {
        name: np.load(target / f"{name}.npy", mmap_mode="r", allow_pickle=False).view(np.ndarray)
        for name in (*_SEGMENT_ARRAYS, *_ORDER_ARRAYS)
    }
    if len(arrays["ids"]) != int(entry["rows"]):
        raise ValueError(f"segment {target} holds {len(arrays['ids'])} rows, not {entry['rows']}")
    deleted_file = entry.get("deleted")
    deleted = (
        np.load(folder / deleted_file, allow_pickle=False).astype(np.int32)
        if deleted_file
        else np.empty(0, dtype=np.int32)
    )
    return _Segment(
        name=str(entry["dir"]), deleted=deleted, deleted_file=deleted_file, saved=True, **arrays
    )


def _collect_garbage(folder: Path, keep: Sequence[str | None]) -> None:
    """Remove segments, tombstones and manifests named by none of the ``keep`` manifests."""
    import shutil

    wanted: set[str] = {_POINTER}
    for name in keep:
        if name is None:
            continue
        try:
            manifest = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        wanted.add(name)
        for entry in [*manifest.get("segments", []), *(manifest.get("documents") or [])]:
            wanted.add(str(entry["dir"]))
            if entry.get("deleted"):
                wanted.add(str(entry["deleted"]))
    for path in folder.iterdir():
        if path.name in wanted or path.name.startswith("."):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


__all__ = ["LexicalIndex", "tokenize", "tokenizer_fingerprint"]
