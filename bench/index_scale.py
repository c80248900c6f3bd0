"""Bytes per chunk and serving RAM of the literature index at 20k to 1M chunks (synthetic).

Chunks are made from real PubMedQA sentences (two per chunk, the size of a MiniLM chunk) with
random unit vectors (384 dimensions, MiniLM's), so the store's size is measured without spending
the time to embed. Prints, per size: Chroma bytes per chunk split into HNSW files and SQLite
tables (metadata and text, full-text index, ids, free pages), and the RSS a fresh process adds to
open it and run 200 queries; BM25 segment bytes per chunk and the same serving RSS; the time of a
full BM25 build and of adding 10 documents (the baseline named for the incremental add is the
full build, measured in the same run). With ``--ray-documents``: chunks/s per Ray embedding actor
against a single-process ingest of the same abstracts (the baseline, same run) and its peak RSS.

    python bench/index_scale.py [--sizes 20000 200000 1000000] [--chroma-max 200000]
    python bench/index_scale.py --sizes --ray-documents 200 --ray-workers 2   # Ray only
"""

from __future__ import annotations

import argparse
import json
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


def _sentences() -> list[str]:
    from tests.knowledge.index_support import corpus_records

    out: list[str] = []
    for record in corpus_records():
        for section in record["sections"]:
            out.extend(s for s in re.split(r"(?<=\.)\s+", section["text"]) if len(s) > 20)
    return out


def _chunks(count: int) -> tuple[list[str], list[str], list[str], list[int | None]]:
    sentences = _sentences()
    n = len(sentences)
    texts = [f"{sentences[i % n]} {sentences[(7 * i + 3) % n]} [{i}]" for i in range(count)]
    ids = [f"{i:032x}" for i in range(count)]
    sources = [str(10_000_000 + i // 4) for i in range(count)]
    years: list[int | None] = [1990 + i % 35 for i in range(count)]
    return ids, texts, sources, years


def _size(path: Path, pattern: str = "**/*") -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


def _rss_child(folder: Path) -> dict[str, float]:
    """RSS added by loading the BM25 index in a fresh process and running 200 queries."""
    code = f"""
import re, json, time
from pathlib import Path
from typing import Any
from medgraph.knowledge.lexical import LexicalIndex
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
import numpy, bm25s.stopwords
before = rss()
index = LexicalIndex.load(Path({str(folder)!r}))
words = ["patients", "treatment", "children", "risk", "surgery", "mortality", "diabetes",
         "cancer", "outcome", "randomized", "trial", "infection", "pain", "blood", "pressure"]
started = time.perf_counter()
for i in range(200):
    index.search(" ".join(words[(i * j) % len(words)] for j in range(1, 6)), 40)
seconds = time.perf_counter() - started
print(json.dumps({{"rss": rss() - before, "ms_per_query": 1000 * seconds / 200}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def lexical(count: int, folder: Path) -> dict[str, float]:
    from medgraph.knowledge.lexical import LexicalIndex

    ids, texts, sources, years = _chunks(count + 45)
    started = time.perf_counter()
    index = LexicalIndex.build(ids[:count], texts[:count], sources[:count], years[:count], 1)
    index.save(folder)
    build = time.perf_counter() - started
    loaded = LexicalIndex.load(folder)
    assert loaded is not None
    started = time.perf_counter()
    grown = loaded.updated(
        generation=2,
        ids=ids[count:],
        texts=texts[count:],
        source_ids=sources[count:],
        years=years[count:],
    )
    grown.save(folder)
    add = time.perf_counter() - started
    child = _rss_child(folder)
    return {
        "build_s": build,
        "add10_s": add,
        "bytes_per_chunk": _size(folder) / count,
        "rss_per_chunk": child["rss"] / count,
        "ms_per_query": child["ms_per_query"],
    }


def chroma(count: int, folder: Path) -> dict[str, Any]:
    import chromadb

    ids, texts, sources, years = _chunks(count)
    client = chromadb.PersistentClient(
        str(folder), settings=chromadb.Settings(anonymized_telemetry=False)
    )
    collection = client.create_collection(
        "scale", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for start in range(0, count, 1000):
        end = min(start + 1000, count)
        vectors = rng.standard_normal((end - start, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        metadatas = [
            {
                "source_id": sources[i],
                "index": i % 4,
                "start": 0,
                "end": len(texts[i]),
                "doc_hash": f"{i:032x}",
                "n_chunks": 4,
                "title": f"Title of {sources[i]}",
                "year": years[i] or 0,
                "journal": "J Synthetic Med",
                "pmid": sources[i],
                "authors": "Doe J; Roe R",
                "generation": 1,
            }
            for i in range(start, end)
        ]
        collection.add(
            ids=ids[start:end], embeddings=vectors, documents=texts[start:end], metadatas=metadatas
        )
    seconds = time.perf_counter() - started
    del collection, client
    total = _size(folder)
    sqlite = _size(folder, "*.sqlite3*")
    hnsw_vectors = _size(folder, "*/data_level0.bin")
    served = _chroma_rss_child(folder)
    return {
        "add_chunks_per_s": count / seconds,
        "bytes_per_chunk": total / count,
        "hnsw_bytes_per_chunk": (total - sqlite) / count,
        "hnsw_level0_bytes_per_chunk": hnsw_vectors / count,
        "sqlite_bytes_per_chunk": sqlite / count,
        "text_bytes_per_chunk": sum(len(t.encode()) for t in texts) / count,
        "tables": _per_chunk(_sqlite_tables(folder), sqlite, count),
        "rss_per_chunk": served["rss"] / count,
        "ms_per_query": served["ms_per_query"],
    }


_TABLE_GROUPS = (
    ("embeddings_queue", "log (vector copy)"),
    ("embedding_fulltext_search", "full-text index of the text"),
    ("embedding_metadata", "metadata and text"),
    ("embeddings", "chunk ids"),
)


def _per_chunk(groups: dict[str, int], file_bytes: int, count: int) -> dict[str, float]:
    """Table groups per chunk, plus the file bytes no table holds (free pages, the WAL)."""
    out = {name: size / count for name, size in groups.items()}
    out["free pages and WAL"] = (file_bytes - sum(groups.values())) / count
    return out


def _sqlite_tables(folder: Path) -> dict[str, int]:
    """Bytes of Chroma's SQLite file per table group (tables with their indexes), from dbstat."""
    import sqlite3

    connection = sqlite3.connect(f"file:{folder / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT s.name, coalesce(m.tbl_name, s.name), sum(s.pgsize) FROM dbstat s "
            "LEFT JOIN sqlite_master m ON m.name = s.name GROUP BY s.name"
        ).fetchall()
    finally:
        connection.close()
    groups: dict[str, int] = {}
    for _name, table, size in rows:
        label = next((g for prefix, g in _TABLE_GROUPS if table.startswith(prefix)), "other")
        groups[label] = groups.get(label, 0) + size
    return groups


def _chroma_rss_child(folder: Path) -> dict[str, float]:
    """RSS added by opening the Chroma store in a fresh process and running 200 k=40 queries."""
    code = f"""
import re, json, time
import numpy as np
import chromadb
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
before = rss()
client = chromadb.PersistentClient({str(folder)!r},
                                   settings=chromadb.Settings(anonymized_telemetry=False))
collection = client.get_collection("scale", embedding_function=None)
rng = np.random.default_rng(1)
queries = rng.standard_normal((200, 384)).astype(np.float32)
queries /= np.linalg.norm(queries, axis=1, keepdims=True)
started = time.perf_counter()
for query in queries:
    collection.query(query_embeddings=query[None, :], n_results=40, include=["distances"])
seconds = time.perf_counter() - started
print(json.dumps({{"rss": rss() - before, "ms_per_query": 1000 * seconds / 200}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _single_ingest(files: list[Path], index_dir: Path) -> dict[str, float]:
    """Single-process ingest in a fresh process: embedding chunks/s and the peak RSS."""
    code = f"""
import json, resource
from pathlib import Path
from typing import Any
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import LiteratureIndex
with LiteratureIndex(KnowledgeSettings(index_dir=Path({str(index_dir)!r}))) as index:
    report = index.ingest([Path(p) for p in {[str(f) for f in files]!r}], progress=False)
print(json.dumps({{"chunks_per_s": report.chunks_added / report.embedding_seconds,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ray_rate(documents: int, workers: int, folder: Path) -> dict[str, float]:
    """Chunks/s per Ray embedding actor (packaged MiniLM) against one process, same abstracts."""
    import ray

    from medgraph.knowledge.config import KnowledgeSettings
    from medgraph.knowledge.ray_ingest import ingest_with_ray
    from tests.knowledge.index_support import corpus_records, write_jsonl
    from tests.support import chroma_server

    records = corpus_records(documents)
    step = max(1, len(records) // (2 * workers))
    files = [
        write_jsonl(folder / "in" / f"part-{i}.jsonl", records[i : i + step])
        for i in range(0, len(records), step)
    ]
    one = _single_ingest(files, folder / "single")
    with chroma_server(folder / "chroma") as url:
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
        try:
            settings = KnowledgeSettings(index_dir=folder / "ray", chroma_url=url)
            started = time.perf_counter()
            report = ingest_with_ray(settings, files, workers=workers, batch_documents=16)
            wall = time.perf_counter() - started
        finally:
            ray.shutdown()
    return {
        "chunks": report.chunks_added,
        "single_chunks_per_s": one["chunks_per_s"],
        "single_peak_rss": one["peak_rss"],
        # embedding_seconds sums the actors' busy time: per-actor throughput
        "per_worker_chunks_per_s": report.chunks_added / report.embedding_seconds,
        "wall_chunks_per_s": report.chunks_added / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[20_000, 200_000])
    parser.add_argument("--chroma-max", type=int, default=20_000, help="largest Chroma size")
    parser.add_argument("--ray-documents", type=int, default=0, help="abstracts for the Ray run")
    parser.add_argument("--ray-workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.ray_documents:
            rate = ray_rate(args.ray_documents, args.ray_workers, Path(tmp) / "ray")
            print(
                f"Ray ingest of {rate['chunks']:.0f} chunks with {args.ray_workers} actors: "
                f"{rate['per_worker_chunks_per_s']:.1f} chunks/s per actor (busy time), "
                f"{rate['wall_chunks_per_s']:.1f} chunks/s wall clock with start-up; one process "
                f"(baseline, same chunks): {rate['single_chunks_per_s']:.1f} chunks/s = "
                f"{rate['per_worker_chunks_per_s'] / rate['single_chunks_per_s']:.2f}x per actor; "
                f"single-process ingest peak RSS {rate['single_peak_rss'] / 2**20:.0f} MiB"
            )
        for count in args.sizes:
            lex = lexical(count, Path(tmp) / f"bm25-{count}")
            print(
                f"{count:>8} chunks  BM25: {lex['bytes_per_chunk']:.0f} B/chunk on disk, "
                f"{lex['rss_per_chunk']:.0f} B/chunk RSS serving, "
                f"{lex['ms_per_query']:.2f} ms/query; full build {lex['build_s']:.2f} s, add 10 "
                f"documents {lex['add10_s']:.3f} s = {lex['add10_s'] / lex['build_s']:.4f}x "
                f"the full build"
            )
            if count <= args.chroma_max:
                db = chroma(count, Path(tmp) / f"chroma-{count}")
                print(
                    f"{count:>8} chunks  Chroma: {db['bytes_per_chunk']:.0f} B/chunk "
                    f"(HNSW files {db['hnsw_bytes_per_chunk']:.0f}, SQLite "
                    f"{db['sqlite_bytes_per_chunk']:.0f}; text alone "
                    f"{db['text_bytes_per_chunk']:.0f}, vector 1536); "
                    f"{db['add_chunks_per_s']:.0f} chunks/s added"
                )
                tables = ", ".join(f"{k} {v:.0f}" for k, v in sorted(db["tables"].items()))
                print(
                    f"{count:>8} chunks  Chroma detail: HNSW data_level0 (vectors + level-0 "
                    f"links) {db['hnsw_level0_bytes_per_chunk']:.0f} B/chunk; SQLite per table "
                    f"group, B/chunk: {tables}; serving RSS {db['rss_per_chunk']:.0f} B/chunk, "
                    f"{db['ms_per_query']:.2f} ms per k=40 query"
                )


if __name__ == "__main__":
    main()
