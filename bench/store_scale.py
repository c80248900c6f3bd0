"""The Milvus store against the Chroma store at 20k to 1M chunks: size, serving RAM, speed.

Chunks are made from real PubMedQA sentences (two per chunk, the size of a MiniLM chunk) with
random 384-dimensional unit vectors (MiniLM's size), written as one parquet table and imported
into each store through ``LiteratureIndex.import_vectors`` (the route precomputed PubMed vectors
take), so no time goes to embedding. Per store and size: bytes per chunk on disk (the whole index
folder), the add rate (records imported per second, the store's own indexing included: BM25
segments for Chroma, a flush for Milvus), and, in a fresh process, the RSS that opening the index
and running 200 hybrid searches (k=10) adds, and their p50/p95 latency. The baseline is the
Chroma store (embedded Chroma + medgraph's BM25), measured in the same run.

    python bench/store_scale.py [--sizes 20000 200000 1000000] [--chroma-max 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ENCODER = "synthetic-unit-384"
DIMENSION = 384


def _sentences() -> list[str]:
    from tests.knowledge.index_support import corpus_records

    out: list[str] = []
    for record in corpus_records():
        for section in record["sections"]:
            out.extend(s for s in re.split(r"(?<=\.)\s+", section["text"]) if len(s) > 20)
    return out


def write_table(count: int, path: Path) -> None:
    """``count`` synthetic records (id, text, title, year, pmid, vector) as one parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sentences = _sentences()
    n = len(sentences)
    rng = np.random.default_rng(0)
    writer = None
    for start in range(0, count, 50_000):
        rows = range(start, min(start + 50_000, count))
        vectors = rng.standard_normal((len(rows), DIMENSION)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        table = pa.table(
            {
                "id": [f"{10_000_000 + i}" for i in rows],
                "text": [f"{sentences[i % n]} {sentences[(7 * i + 3) % n]}" for i in rows],
                "title": [f"Synthetic study {i}" for i in rows],
                "year": [1990 + i % 35 for i in rows],
                "pmid": [f"{10_000_000 + i}" for i in rows],
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.reshape(-1)), DIMENSION
                ),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(str(path), table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(store: str, table: Path, index_dir: Path) -> dict[str, float]:
    """Import ``table`` into a new index of ``store``; add rate and bytes per chunk."""
    from medgraph.knowledge.config import KnowledgeSettings
    from medgraph.knowledge.index import LiteratureIndex
    from medgraph.knowledge.vector_import import open_vector_source

    settings = KnowledgeSettings(index_dir=index_dir, store=store)  # type: ignore[arg-type]
    source = open_vector_source(table, "parquet", encoder=ENCODER)
    started = time.perf_counter()
    with LiteratureIndex(settings) as index:
        report = index.import_vectors(source, progress=False, batch_size=2000)
    seconds = time.perf_counter() - started
    return {
        "chunks": report.index_chunks,
        "add_per_s": report.chunks_added / seconds,
        "bytes_per_chunk": _folder_bytes(index_dir) / report.index_chunks,
    }


_SERVE = """
import json, re, sys, time
import numpy as np
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import LiteratureIndex

def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024

class Queries:
    model_name = {encoder!r}
    query_model_name = {encoder!r}
    identity = {{"embedding_model": {encoder!r}, "document_prefix": ""}}
    dimension = {dimension}
    max_tokens = 512
    rng = np.random.default_rng(1)
    def count_tokens(self, text):
        return len(text.split())
    def embed_documents(self, texts):
        raise AssertionError("serving embeds no passage")
    def embed_queries(self, texts):
        vectors = self.rng.standard_normal((len(texts), {dimension})).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

words = ["patients", "treatment", "children", "risk", "surgery", "mortality", "diabetes",
         "cancer", "outcome", "randomized", "trial", "infection", "pain", "blood", "pressure"]
before = rss()
settings = KnowledgeSettings(index_dir={index_dir!r}, store={store!r})
with LiteratureIndex(settings, embedder=Queries()) as index:
    index.search("patients treatment", k=10)  # opens the store and loads the lexical side
    times = []
    for i in range(200):
        query = " ".join(words[(i * j) % len(words)] for j in range(1, 6))
        started = time.perf_counter()
        index.search(query, k=10)
        times.append((time.perf_counter() - started) * 1000)
    print(json.dumps({{"rss": rss() - before, "p50": float(np.percentile(times, 50)),
                      "p95": float(np.percentile(times, 95))}}))
"""


def serve(store: str, index_dir: Path) -> dict[str, float]:
    """RSS added by opening the index in a fresh process and 200 hybrid searches; latency."""
    code = _SERVE.format(
        encoder=ENCODER, dimension=DIMENSION, index_dir=str(index_dir), store=store
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"serving {store} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--chroma-max", type=int, default=200_000, help="largest Chroma size")
    args = parser.parse_args()
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.sizes:
            table = Path(tmp) / f"chunks-{count}.parquet"
            write_table(count, table)
            for store in ("chroma", "milvus"):
                if store == "chroma" and count > args.chroma_max:
                    continue
                index_dir = Path(tmp) / f"{store}-{count}"
                row = build(store, table, index_dir) | serve(store, index_dir)
                results[store, count] = row
                print(
                    f"{store:>6} {count:>8} chunks: {row['bytes_per_chunk']:,.0f} B/chunk on "
                    f"disk, serving RSS {row['rss'] / count:,.0f} B/chunk, hybrid k=10 p50 "
                    f"{row['p50']:.1f} ms p95 {row['p95']:.1f} ms, add {row['add_per_s']:,.0f} "
                    f"chunks/s (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                # the folder of a finished size is not needed again
                subprocess.run(["rm", "-rf", str(index_dir)], check=True)
            table.unlink()
    print("== Milvus / Chroma (the baseline), same run:")
    for count in args.sizes:
        if ("chroma", count) not in results:
            continue
        ours, base = results["milvus", count], results["chroma", count]
        print(
            f"   {count:>8} chunks: disk {ours['bytes_per_chunk'] / base['bytes_per_chunk']:.2f}x, "
            f"serving RSS {ours['rss'] / base['rss']:.2f}x, hybrid p50 "
            f"{ours['p50'] / base['p50']:.2f}x, p95 {ours['p95'] / base['p95']:.2f}x, add rate "
            f"{ours['add_per_s'] / base['add_per_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
