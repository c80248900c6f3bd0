"""medgraph.knowledge: readers, chunking, embeddings and the literature index (Chroma or Milvus).

Names are imported lazily, so ``import medgraph.knowledge`` loads neither torch nor a store's
client; the embedding model and the store open the first time an index is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medgraph._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Chunk": "medgraph.knowledge.types",
    "Document": "medgraph.knowledge.types",
    "Evidence": "medgraph.knowledge.types",
    "KnowledgeSettings": "medgraph.knowledge.config",
    "LiteratureIndex": "medgraph.knowledge.index",
    "IngestReport": "medgraph.knowledge.index",
    "IndexStats": "medgraph.knowledge.index",
    "SearchFilter": "medgraph.knowledge.index",
    "SentenceTransformerEmbedder": "medgraph.knowledge.embeddings",
}

if TYPE_CHECKING:
    from medgraph.knowledge.config import KnowledgeSettings
    from medgraph.knowledge.embeddings import SentenceTransformerEmbedder
    from medgraph.knowledge.index import IndexStats, IngestReport, LiteratureIndex, SearchFilter
    from medgraph.knowledge.types import Chunk, Document, Evidence

__all__ = [
    "Chunk",
    "Document",
    "Evidence",
    "IndexStats",
    "IngestReport",
    "KnowledgeSettings",
    "LiteratureIndex",
    "SearchFilter",
    "SentenceTransformerEmbedder",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
