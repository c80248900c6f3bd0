"""Fixtures of the evaluation tests: question files and a small real index (packaged MiniLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.evals.support import dev_lines, gold_corpus_lines, write_lines


@pytest.fixture(scope="session")
def eval_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with dev.jsonl (first dev questions) and corpus.jsonl (their gold abstracts)."""
    folder = tmp_path_factory.mktemp("eval-data")
    lines = dev_lines()
    write_lines(folder / "dev.jsonl", lines)
    write_lines(folder / "corpus.jsonl", gold_corpus_lines({json.loads(x)["pmid"] for x in lines}))
    return folder


@pytest.fixture(scope="session")
def minilm_index(eval_data: Path) -> Path:
    """A real index (packaged MiniLM, Chroma + BM25) of the gold abstracts, as the CLI opens it."""
    from medgraph.knowledge.config import KnowledgeSettings
    from medgraph.knowledge.index import LiteratureIndex

    index_dir = eval_data / "index"
    with LiteratureIndex(KnowledgeSettings(index_dir=index_dir)) as index:
        report = index.ingest([eval_data / "corpus.jsonl"], progress=False)
    assert not report.failures
    return index_dir
