"""Helpers for the literature-index tests: data paths, a fast deterministic embedder, small corpora.

The hashing embedder stands in for sentence-transformers where a test exercises storage,
incremental ingest, locking or crash recovery rather than embedding quality: words are hashed into
a fixed number of signed buckets, so texts that share words get similar vectors, and it counts the
texts it embeds. Real-model tests use the packaged MiniLM.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.support import shared_data_dir

_WORD = re.compile(r"\w+")


def pubmedqa_dir() -> Path:
    """The shared PubMedQA folder (corpus.jsonl, dev.jsonl)."""
    return shared_data_dir() / "pubmedqa"


def corpus_records(limit: int | None = None) -> list[dict[str, Any]]:
    """Records of the shared PubMedQA corpus, in file order."""
    records = []
    with (pubmedqa_dir() / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            records.append(json.loads(line))
            if limit is not None and len(records) >= limit:
                break
    return records


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    """Write ``records`` as JSON lines and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


class HashEmbedder:
    """Deterministic bag-of-words hashing embedder that counts what it embeds."""

    def __init__(
        self,
        dimension: int = 256,
        max_tokens: int = 40,
        name: str = "test-hash-embedder",
        delay: float = 0.0,
        announce: bool = False,
    ) -> None:
        self._dimension = dimension
        self._max_tokens = max_tokens
        self.name = name
        self.delay = delay
        self.announce = announce
        self.documents_embedded = 0
        self.queries_embedded = 0
        self.calls = 0

    @property
    def identity(self) -> dict[str, str]:
        return {"embedding_model": self.name, "document_prefix": ""}

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self._dimension, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self._dimension
            vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        if norm == 0:
            vector[0] = 1.0
            norm = 1.0
        return vector / norm

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.announce:
            print(f"EMBED {self.calls} {len(texts)}", flush=True)
        if self.delay:
            time.sleep(self.delay)
        self.documents_embedded += len(texts)
        return np.stack([self._vector(text) for text in texts])

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.queries_embedded += len(texts)
        return np.stack([self._vector(text) for text in texts])


def ingest_worker(argv: Sequence[str]) -> None:
    """Subprocess entry: ``index_dir corpus batch_size delay hold [settings json]`` -> ingest with
    HashEmbedder (the JSON adds KnowledgeSettings fields, e.g. the store).

    Prints ``EMBED n`` before storing batch n, ``DONE <json>`` after the ingest, and with
    ``hold`` keeps the index (and its write lock) open until standard input closes.
    """
    from medgraph.knowledge.config import KnowledgeSettings
    from medgraph.knowledge.index import LiteratureIndex

    index_dir, corpus, batch_size, delay, hold = argv[:5]
    extra = json.loads(argv[5]) if len(argv) > 5 else {}
    settings = KnowledgeSettings(index_dir=Path(index_dir), batch_size=int(batch_size), **extra)
    embedder = HashEmbedder(delay=float(delay), announce=True)
    index = LiteratureIndex(settings, embedder=embedder)
    report = index.ingest([corpus], progress=False)
    print("DONE " + json.dumps({"added": report.chunks_added, "pid": os.getpid()}), flush=True)
    if hold == "hold":
        sys.stdin.read()
    index.close()


if __name__ == "__main__":
    ingest_worker(sys.argv[1:])
