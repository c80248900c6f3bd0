"""BM25 over the indexed chunks (bm25s), kept beside the Chroma store.

The lexical index is always rebuilt from the chunks the vector store holds, so both describe the
same chunks. It is saved under ``index_dir/bm25`` as a generation folder plus a ``current.json``
pointer that is replaced atomically, so a reader never sees a half-written index. Next to the BM25
arrays it keeps a small chunk table (id, source id, year) that answers filters exactly.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

_WORD = re.compile(r"\w+", re.UNICODE)
_MISSING_YEAR = -1
_POINTER = "current.json"
_TABLE = "chunks.json"

TOKENIZER_VERSION = "words-stopwords-questions-snowball-en-1"
"""Names what :func:`tokenize` does; an index saved by another tokeniser must be rebuilt."""


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


class LexicalIndex:
    """BM25 scores over chunk texts, with the chunk table needed to filter and map hits to ids."""

    def __init__(
        self,
        ids: Sequence[str],
        source_ids: Sequence[str],
        years: Sequence[int | None],
        generation: int,
        retriever: Any,
    ) -> None:
        self.ids = list(ids)
        self.source_ids = np.asarray(list(source_ids), dtype=object)
        self.years = np.asarray(
            [_MISSING_YEAR if year is None else int(year) for year in years], dtype=np.int32
        )
        self.generation = generation
        self._retriever = retriever

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        texts: Sequence[str],
        source_ids: Sequence[str],
        years: Sequence[int | None],
        generation: int,
    ) -> LexicalIndex:
        """Index ``texts`` (aligned with ``ids``, ``source_ids`` and ``years``)."""
        if not len(ids) == len(texts) == len(source_ids) == len(years):
            raise ValueError("ids, texts, source_ids and years must have the same length")
        retriever = None
        if ids:
            import bm25s

            retriever = bm25s.BM25()
            retriever.index([tokenize(text) for text in texts], show_progress=False)
        return cls(ids, source_ids, years, generation, retriever)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def document_count(self) -> int:
        """Distinct source ids among the indexed chunks."""
        return len(set(self.source_ids.tolist()))

    def mask(
        self,
        *,
        year_min: int | None = None,
        year_max: int | None = None,
        source_ids: Iterable[str] | None = None,
    ) -> npt.NDArray[np.float32] | None:
        """A 0/1 weight per chunk that keeps only chunks passing the filter (None: no filter)."""
        if year_min is None and year_max is None and source_ids is None:
            return None
        keep = np.ones(len(self.ids), dtype=bool)
        if year_min is not None or year_max is not None:
            keep &= self.years != _MISSING_YEAR
            if year_min is not None:
                keep &= self.years >= year_min
            if year_max is not None:
                keep &= self.years <= year_max
        if source_ids is not None:
            keep &= np.isin(self.source_ids, np.asarray(list(source_ids), dtype=object))
        return keep.astype(np.float32)

    def search(
        self, query: str | Sequence[str], k: int, mask: npt.NDArray[np.float32] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` best chunks for ``query`` as (chunk id, BM25 score); zero scores dropped.

        ``query`` is text, or the terms :func:`tokenize` made of it (to tokenise a query once).
        """
        if self._retriever is None or k < 1:
            return []
        tokens = tokenize(query) if isinstance(query, str) else query
        known = [token for token in tokens if token in self._retriever.vocab_dict]
        if not known:
            return []
        depth = min(k, len(self.ids))
        results = self._retriever.retrieve(
            [known], k=depth, show_progress=False, weight_mask=mask, n_threads=0
        )
        indices = np.asarray(results.documents)[0]
        scores = np.asarray(results.scores)[0]
        return [
            (self.ids[int(index)], float(score))
            for index, score in zip(indices, scores, strict=True)
            if score > 0
        ]

    # -- persistence ---------------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        """Write this index as a new generation under ``folder``; point ``current.json`` at it."""
        folder.mkdir(parents=True, exist_ok=True)
        name = f"g{self.generation:06d}-{uuid.uuid4().hex[:8]}"
        target = folder / name
        target.mkdir()
        if self._retriever is not None:
            self._retriever.save(str(target), show_progress=False)
        table = {
            "generation": self.generation,
            "tokenizer": TOKENIZER_VERSION,
            "ids": self.ids,
            "source_ids": self.source_ids.tolist(),
            "years": self.years.tolist(),
        }
        (target / _TABLE).write_text(json.dumps(table), encoding="utf-8")
        pointer = folder / f".{_POINTER}.{uuid.uuid4().hex[:8]}"
        pointer.write_text(json.dumps({"dir": name, "generation": self.generation}), "utf-8")
        os.replace(pointer, folder / _POINTER)
        for old in folder.iterdir():
            if old.is_dir() and old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        return target

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
        """The saved index under ``folder``; None when absent, unreadable or tokenised otherwise."""
        try:
            pointer = json.loads((folder / _POINTER).read_text(encoding="utf-8"))
            target = folder / str(pointer["dir"])
            table = json.loads((target / _TABLE).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if table.get("tokenizer") != TOKENIZER_VERSION:
            return None  # built by another tokeniser: its terms no longer match queries
        retriever = None
        if table["ids"]:
            import bm25s

            try:
                retriever = bm25s.BM25.load(str(target), load_corpus=False)
            except (OSError, ValueError):
                return None
        return cls(
            table["ids"],
            table["source_ids"],
            [None if year == _MISSING_YEAR else year for year in table["years"]],
            int(table["generation"]),
            retriever,
        )


__all__ = ["TOKENIZER_VERSION", "LexicalIndex", "tokenize"]
