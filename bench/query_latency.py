"""Query latency p50/p95 of ``LiteratureIndex.search`` per mode, at ~1k chunks and at 20k+ chunks.

Indexes (embedded Chroma + BM25, packaged MiniLM):

- small: the first 250 PubMedQA abstracts (~1.1k chunks);
- large: the 1,000 abstracts plus 4 duplicated copies of each (``--copies 5``, ~22k chunks). Each
  copy gets distinct ids (PMID ``9<copy><pmid>``) and the same text; its vectors are the original
  chunk's vector plus a small random jitter (norm 0.05, cosine ~0.999 to the original) so the HNSW
  graph does not hold exact duplicates. Only the original texts are embedded by the model (cached by
  text), which keeps building the large index to minutes on a CPU.

Queries are PubMedQA dev questions, each timed end to end (query embedding + store query +
fusion + fetching chunk texts). The named baseline of each ratio is the same mode on the small
index, measured in the same run; query embedding alone is timed too, since it is a fixed cost of
the dense and hybrid modes.

Run: ``python bench/query_latency.py [--copies 5] [--queries 200] [--seed-index DIR]``;
``--seed-index`` reuses the vectors of an existing index of the corpus (e.g. the one
``bench/ingest_bench.py --keep DIR`` leaves) instead of embedding the texts again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO_ROOT = Path(__file__).resolve().parents[1]
MODES = ("dense", "lexical", "hybrid")


def _data() -> Path:
    return Path(os.environ.get("MEDGRAPH_DATA", REPO_ROOT.parent / "shared" / "data")) / "pubmedqa"


def percentile(values: Sequence[float], q: float) -> float:
    from medgraph.knowledge.evaluation import percentile as pct

    return pct(values, q)


class CachingEmbedder:
    """The real embedder, with document vectors cached by text and jittered on reuse."""

    def __init__(self, inner: object, jitter: float = 0.05, seed: int = 0) -> None:
        self.inner = inner
        self.cache: dict[str, np.ndarray] = {}
        self.jitter = jitter
        self.rng = np.random.default_rng(seed)
        self.model_calls = 0
        self._fresh: set[str] = set()

    @property
    def identity(self) -> dict[str, str]:
        return self.inner.identity  # type: ignore[attr-defined,no-any-return]

    @property
    def dimension(self) -> int:
        return self.inner.dimension  # type: ignore[attr-defined,no-any-return]

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens  # type: ignore[attr-defined,no-any-return]

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)  # type: ignore[attr-defined,no-any-return]

    def seed_from_index(self, index_dir: Path) -> int:
        import chromadb

        client = chromadb.PersistentClient(
            path=str(index_dir / "chroma"), settings=chromadb.Settings(anonymized_telemetry=False)
        )
        collection = client.get_collection("medgraph", embedding_function=None)
        batch = collection.get(include=["documents", "embeddings"])
        texts: list[str] = batch["documents"] or []
        vectors = batch["embeddings"] if batch["embeddings"] is not None else []
        for text, vector in zip(texts, vectors, strict=True):
            self.cache[text] = np.asarray(vector, dtype=np.float32)
            self._fresh.add(text)
        return len(self.cache)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        missing = [text for text in dict.fromkeys(texts) if text not in self.cache]
        if missing:
            self.model_calls += len(missing)
            for text, vector in zip(missing, self.inner.embed_documents(missing), strict=True):  # type: ignore[attr-defined]
                self.cache[text] = vector
                self.cache[text].setflags(write=False)
                self._fresh.add(text)
        rows = []
        for text in texts:
            vector = self.cache[text]
            if text in self._fresh:
                self._fresh.discard(text)  # first use: the model's own vector
            else:
                noise = self.rng.normal(size=vector.shape).astype(np.float32)
                vector = vector + self.jitter * noise / np.linalg.norm(noise)
                vector = vector / np.linalg.norm(vector)
            rows.append(vector)
        return np.stack(rows)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)  # type: ignore[attr-defined,no-any-return]


def _write_copies(records: list[dict], copies: int, path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        for copy in range(copies):
            for record in records:
                pmid = record["pmid"] if copy == 0 else f"9{copy}{int(record['pmid']):09d}"
                out.write(json.dumps(dict(record, pmid=pmid)) + "\n")


def _latencies(index: object, queries: Sequence[str], mode: str, k: int) -> list[float]:
    index.search(queries[0], k=k, mode=mode)  # type: ignore[attr-defined]
    timings = []
    for query in queries:
        started = time.perf_counter()
        index.search(query, k=k, mode=mode)  # type: ignore[attr-defined]
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-docs", type=int, default=250)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument(
        "--large-docs",
        type=int,
        default=None,
        help="Abstracts copied into the large index (default all 1,000); fewer with more "
        "--copies reaches 20k chunks while embedding fewer texts.",
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--seed-index", type=Path, default=None)
    args = parser.parse_args(argv)

    from medgraph.knowledge.config import KnowledgeSettings
    from medgraph.knowledge.embeddings import SentenceTransformerEmbedder
    from medgraph.knowledge.evaluation import load_questions
    from medgraph.knowledge.index import LiteratureIndex

    records = [json.loads(line) for line in (_data() / "corpus.jsonl").open(encoding="utf-8")]
    questions = [q.question for q in load_questions(_data() / "dev.jsonl")][: args.queries]
    embedder = CachingEmbedder(SentenceTransformerEmbedder())
    if args.seed_index:
        print(f"seeded {embedder.seed_from_index(args.seed_index)} vectors from {args.seed_index}")
    work = Path(tempfile.mkdtemp(prefix="medgraph-latency-bench-"))
    sizes: dict[str, int] = {}
    results: dict[tuple[str, str], list[float]] = {}
    loads: dict[tuple[str, str], float] = {}
    try:
        plans = {
            "small": (records[: args.small_docs], 1),
            "large": (records[: args.large_docs], args.copies),
        }
        for name, (subset, copies) in plans.items():
            corpus = work / f"{name}.jsonl"
            _write_copies(subset, copies, corpus)
            settings = KnowledgeSettings(index_dir=work / name)
            with LiteratureIndex(settings, embedder=embedder) as index:  # type: ignore[arg-type]
                started = time.perf_counter()
                report = index.ingest([corpus], progress=False)
                sizes[name] = report.index_chunks
                print(
                    f"{name}: {report.documents} documents, {report.index_chunks} chunks, built "
                    f"in {time.perf_counter() - started:.0f} s ({embedder.model_calls} texts "
                    f"embedded by the model so far)",
                    flush=True,
                )
                for mode in MODES:
                    results[(name, mode)] = _latencies(index, questions, mode, args.k)
                    loads[(name, mode)] = os.getloadavg()[0]
        query_embedding = []
        for question in questions:
            started = time.perf_counter()
            embedder.embed_queries([question])
            query_embedding.append((time.perf_counter() - started) * 1000)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"== query latency, {len(questions)} PubMedQA dev questions, k={args.k}, "
        f"{os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f})"
    )
    print(f"embedding backend: {getattr(embedder.inner, 'backend', 'unknown')}")
    print(f"{'mode':8} {'chunks':>7} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'load':>5}")
    for (name, mode), timings in results.items():
        print(
            f"{mode:8} {sizes[name]:7d} {percentile(timings, 50):8.1f} "
            f"{percentile(timings, 95):8.1f} {statistics.mean(timings):8.1f} "
            f"{loads[(name, mode)]:5.1f}"
        )
    print(
        f"query embedding alone: p50 {percentile(query_embedding, 50):.1f} ms, "
        f"p95 {percentile(query_embedding, 95):.1f} ms"
    )
    print(
        f"== ratio large ({sizes['large']} chunks) / baseline small ({sizes['small']} chunks), "
        f"same mode, same run"
    )
    for mode in MODES:
        small, large = results[("small", mode)], results[("large", mode)]
        print(
            f"{mode:8} p50 {percentile(large, 50) / percentile(small, 50):.2f}x  "
            f"p95 {percentile(large, 95) / percentile(small, 95):.2f}x"
        )


if __name__ == "__main__":
    main()
