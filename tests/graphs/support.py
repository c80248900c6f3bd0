"""Small in-memory literature for graph tests: real PubMedQA abstracts, keyword search."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from medgraph.knowledge.chunking import chunk_document
from medgraph.knowledge.readers import read_file
from medgraph.knowledge.types import Chunk, Document, Evidence
from tests.support import shared_data_dir

_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"the", "of", "and", "in", "a", "to", "is", "for", "with", "on", "by", "does", "do", "are"}


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def corpus_documents(limit: int = 60) -> list[Document]:
    """The first ``limit`` abstracts of the shared PubMedQA corpus."""
    return read_file(shared_data_dir() / "pubmedqa" / "corpus.jsonl")[:limit]


def dev_questions(limit: int = 20) -> list[dict[str, Any]]:
    path = shared_data_dir() / "pubmedqa" / "dev.jsonl"
    lines = path.read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in lines if line.strip()][:limit]


class KeywordIndex:
    """Searches chunks by word overlap; records every query (an EvidenceSearcher for tests)."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.chunks: list[tuple[Chunk, Document]] = []
        for document in documents:
            meta = document.model_copy(update={"text": "", "sections": (), "pages": ()})
            for chunk in chunk_document(document, lambda t: len(t.split()), 120):
                self.chunks.append((chunk, meta))
        self.queries: list[str] = []

    def search(
        self, query: str, k: int = 10, mode: str = "hybrid", where: Mapping[str, Any] | None = None
    ) -> list[Evidence]:
        self.queries.append(query)
        wanted = words(query)
        scored = [(len(wanted & words(c.text)), c, d) for c, d in self.chunks]
        scored = [s for s in scored if s[0] > 0]
        scored.sort(key=lambda s: -s[0])
        return [Evidence(chunk=c, document=d, score=float(s)) for s, c, d in scored[:k]]

    def source_ids(self) -> set[str]:
        return {d.source_id for _, d in self.chunks}
