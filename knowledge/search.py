"""What a store's searcher gives the literature index: ranked chunk ids, records and scores.

:class:`~medgraph.knowledge.chroma_search.ChromaSearch` (Chroma beside medgraph's BM25 files) and
:class:`~medgraph.knowledge.milvus_search.MilvusSearch` (Milvus with its own BM25) implement
:class:`Searcher`; :class:`~medgraph.knowledge.index.LiteratureIndex` reads the records that a
ranking lacks, reranks, and builds the evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol, get_args

from medgraph.knowledge.search_filter import SearchFilter
from medgraph.knowledge.store import StoredChunk

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

SearchMode = Literal["hybrid", "dense", "lexical"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)

Ranked = tuple[list[tuple[str, float]], dict[str, StoredChunk], dict[str, dict[str, float]]]
"""(chunk id, score) best first; the records already read, by chunk id; each chunk's scores."""

QueryEmbedder = Callable[[str], "npt.NDArray[np.float32]"]


class Searcher(Protocol):
    """One store's search side, bound to that store."""

    ingesting: bool
    """True while an ingest of this process writes (searches keep the last complete state)."""

    def rank(
        self,
        query: str,
        embed_query: QueryEmbedder,
        mode: SearchMode,
        wanted: int,
        depth: int,
        search_filter: SearchFilter,
    ) -> Ranked:
        """The ``wanted`` best chunks for ``query``, each retriever pooling ``depth`` chunks."""
        ...

    def start_ingest(self) -> None:
        """Called before an ingest writes (under the index's mutex)."""
        ...

    def finish_ingest(self, generation: int, *, removed: bool) -> tuple[int, int]:
        """Make ``generation`` visible and mark it complete; returns (chunks, documents) held.

        ``removed``: the ingest deleted chunks other than replaced ones (a prune, an emptied
        document).
        """
        ...

    def document_count(self) -> int:
        """Documents the index holds."""
        ...

    def close(self) -> None:
        """Let go of threads and caches."""
        ...
