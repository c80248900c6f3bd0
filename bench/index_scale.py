"""Bytes per chunk and serving RAM of the literature index at 20k and 200k chunks (synthetic).

Chunks are made from real PubMedQA sentences (two per chunk, the size of a MiniLM chunk) with
random unit vectors (384 dimensions, MiniLM's), so the store's size is measured without spending
the time to embed. Prints, per size: Chroma bytes per chunk split into HNSW files and SQLite
(metadata, text, embedding log); BM25 segment bytes per chunk; the RSS a process adds to load
the BM25 index and run 200 queries; the time of a full BM25 build and of adding 10 documents
(the baseline named for the incremental add is the full build, measured in the same run).

    python bench/index_scale.py [--sizes 20000 200000] [--chroma-max 20000]
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


def chroma(count: int, folder: Path) -> dict[str, float]:
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
    return {
        "add_chunks_per_s": count / seconds,
        "bytes_per_chunk": total / count,
        "hnsw_bytes_per_chunk": (total - sqlite) / count,
        "sqlite_bytes_per_chunk": sqlite / count,
        "text_bytes_per_chunk": sum(len(t.encode()) for t in texts) / count,
    }


def ray_rate(documents: int, workers: int, folder: Path) -> dict[str, float]:
    """Chunks/s per Ray embedding actor (packaged MiniLM) against one process, same abstracts."""
    import ray

    from medgraph.knowledge.config import KnowledgeSettings
    from medgraph.knowledge.index import LiteratureIndex
    from medgraph.knowledge.ray_ingest import ingest_with_ray
    from tests.knowledge.index_support import corpus_records, write_jsonl
    from tests.support import chroma_server

    records = corpus_records(documents)
    step = max(1, len(records) // (2 * workers))
    files = [
        write_jsonl(folder / "in" / f"part-{i}.jsonl", records[i : i + step])
        for i in range(0, len(records), step)
    ]
    with LiteratureIndex(KnowledgeSettings(index_dir=folder / "single")) as single:
        one = single.ingest(files, progress=False)
    with chroma_server(folder / "chroma") as url:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        try:
            settings = KnowledgeSettings(index_dir=folder / "ray", chroma_url=url)
            started = time.perf_counter()
            report = ingest_with_ray(settings, files, workers=workers, batch_documents=16)
            wall = time.perf_counter() - started
        finally:
            ray.shutdown()
    return {
        "chunks": report.chunks_added,
        "single_chunks_per_s": one.chunks_added / one.embedding_seconds,
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
                f"{rate['per_worker_chunks_per_s'] / rate['single_chunks_per_s']:.2f}x per actor"
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


if __name__ == "__main__":
    main()
