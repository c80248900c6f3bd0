"""Helpers shared by the citation and verification tests: real abstracts as numbered evidence."""

from __future__ import annotations

from collections.abc import Sequence

from medgraph.knowledge.chunking import chunk_document
from medgraph.knowledge.types import Document, Evidence


def count_words(text: str) -> int:
    """A whitespace token counter (stands in for a tokenizer)."""
    return len(text.split())


def evidence_for(documents: Sequence[Document], max_tokens: int = 80) -> list[Evidence]:
    """Chunks of ``documents`` as evidence numbered 1..n with metadata-only documents."""
    evidence: list[Evidence] = []
    for document in documents:
        metadata = document.model_copy(update={"text": ""})
        for chunk in chunk_document(document, count_words, max_tokens):
            number = len(evidence) + 1
            evidence.append(
                Evidence(chunk=chunk, document=metadata, score=1 / number, number=number)
            )
    return evidence
