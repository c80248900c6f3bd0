"""Precomputed vectors into the index (``LiteratureIndex.import_vectors``), on every store.

Synthetic files in NCBI's MedCPT layout and a parquet table are imported; the test checks that
every record is stored once with its own vector (a dense search with a record's vector finds it
first, by inner product for MedCPT's unnormalised vectors), that BM25 sees the imported texts,
that the index refuses queries encoded by another model, and that a rerun after an interrupted
import adds only what is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medgraph.errors import ConfigurationError
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import LiteratureIndex
from medgraph.knowledge.vector_import import VectorImportError, open_vector_source
from tests.knowledge.vector_files import write_medcpt_chunks, write_parquet_vectors

ARTICLE_ENCODER = "ncbi/MedCPT-Article-Encoder"
QUERY_ENCODER = "ncbi/MedCPT-Query-Encoder"


class LookupQueryEncoder:
    """Stands in for MedCPT's query encoder: a query text maps to a vector given in advance."""

    def __init__(self, vectors: dict[str, np.ndarray], dimension: int) -> None:
        self.vectors = vectors
        self.model_name = ARTICLE_ENCODER
        self.query_model_name = QUERY_ENCODER
        self._dimension = dimension

    @property
    def identity(self) -> dict[str, str]:
        return {"embedding_model": ARTICLE_ENCODER, "document_prefix": ""}

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return 512

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        raise AssertionError("an import embeds nothing")

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[text] for text in texts]).astype(np.float32)


def _index(tmp_path: Path, store_settings: dict[str, Any], embedder: Any = None) -> LiteratureIndex:
    settings = KnowledgeSettings(index_dir=tmp_path / "index", **store_settings)
    return LiteratureIndex(settings, embedder=embedder)


def test_medcpt_vectors_are_stored_once_searchable_and_resumable(
    tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    pmids, vectors, articles = write_medcpt_chunks(tmp_path / "medcpt", [7, 5, 6], dimension=32)
    source = open_vector_source(tmp_path / "medcpt", "medcpt")
    with _index(tmp_path, store_settings) as index:
        report = index.import_vectors(source, progress=False, batch_size=4)
        assert (report.documents, report.documents_added, report.chunks_added) == (18, 18, 18)
        assert (report.index_chunks, report.index_documents) == (18, 18)
        state = index._open_for_read().state()
        assert state["embedding_model"] == ARTICLE_ENCODER
        assert state["query_embedding_model"] == QUERY_ENCODER
        assert state["metric"] == "ip"

    queries = {f"query {pmid}": vector for pmid, vector in zip(pmids, vectors, strict=True)}
    encoder = LookupQueryEncoder(queries, dimension=32)
    with _index(tmp_path, store_settings, encoder) as index:
        for row in (0, 9, 17):
            hit = index.search(f"query {pmids[row]}", k=1, mode="dense")[0]
            assert hit.source_id == pmids[row] and hit.document.pmid == pmids[row]
            # MedCPT's vectors rank by inner product, unnormalised
            own = float(vectors[row] @ vectors[row])
            assert hit.scores["dense"] == pytest.approx(own, rel=1e-3)
            article = articles[pmids[row]]
            assert hit.document.title == article["t"] and hit.chunk.text == article["a"]
            assert hit.document.year == int(article["d"][:4])
        # BM25 indexes the imported title and text
        assert index.search(f"article {pmids[4]}", k=1, mode="lexical")[0].source_id == pmids[4]

        # an import that died: some records never arrived, the generation was left running
        store = index._open_for_read()
        lost = [record.chunk_id for record in store.scan(texts=False)][::4]
        store.delete(lost)
        index.start_generation(store)
        again = index.import_vectors(
            open_vector_source(tmp_path / "medcpt", "medcpt"), progress=False, batch_size=5
        )
        assert again.chunks_added == len(lost) and again.documents_unchanged == 18 - len(lost)
        assert (again.index_chunks, again.index_documents) == (18, 18)
        assert store.state()["ingest_state"] == "complete"

    # the settings' own query model (the article encoder) does not match MedCPT's query encoder
    wrong = LiteratureIndex(
        KnowledgeSettings(
            index_dir=tmp_path / "index", embedding_model=ARTICLE_ENCODER, **store_settings
        )
    )
    with pytest.raises(
        ConfigurationError, match=f"knowledge.query_embedding_model={QUERY_ENCODER}"
    ):
        wrong.search("aspirin after stroke", k=3)
    wrong.close()


def test_parquet_vectors_need_their_encoder_named_and_keep_metadata(
    tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    _, _, rows = write_parquet_vectors(tmp_path / "table", [4, 3], dimension=16)
    unnamed = open_vector_source(tmp_path / "table", "parquet")
    assert unnamed.document_encoder is None
    with _index(tmp_path, store_settings) as index:
        with pytest.raises(VectorImportError, match="--encoder"):
            index.import_vectors(unnamed, progress=False)
        named = open_vector_source(tmp_path / "table", "parquet", encoder="my-encoder")
        report = index.import_vectors(named, progress=False, batch_size=3)
        assert report.chunks_added == report.index_chunks == 7
        state = index._open_for_read().state()
        assert state["query_embedding_model"] == (named.query_encoder or "my-encoder")
        assert state["metric"] == "cosine"
        first = rows[0]
        stored = index.get_document(str(first["id"]))
        assert stored is not None and stored.title == first.get("title")
        assert [chunk.text for chunk in index.get_chunks(str(first["id"]))] == [first["text"]]
        # vectors of another size cannot join the index
        write_parquet_vectors(tmp_path / "other", [2], dimension=8)
        with pytest.raises(ConfigurationError, match="16-dimensional"):
            index.import_vectors(
                open_vector_source(tmp_path / "other", "parquet", encoder="my-encoder"),
                progress=False,
            )
