"""Fixtures shared by the knowledge tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from medgraph.knowledge.readers import read_file
from medgraph.knowledge.types import Document


@pytest.fixture(scope="module")
def corpus(data_dir: Path) -> dict[str, Document]:
    """The shared PubMedQA abstracts by PMID."""
    documents = read_file(data_dir / "pubmedqa" / "corpus.jsonl")
    return {document.source_id: document for document in documents}
