"""Retrieval on the BioASQ dev set: the Milvus store against the Chroma store, same vectors.

Both indexes are built by :meth:`LiteratureIndex.ingest` from the same corpus with the same
passage vectors (the default CPU backend, int8 ONNX MiniLM, cached by text under ``--cache`` so
the second store embeds nothing), then every question is searched in every mode as ``medgraph
eval retrieval`` searches (:func:`medgraph.knowledge.evaluation.search_rankings`). The named
baseline is the Chroma store (embedded Chroma + medgraph's BM25, z-score fusion), measured in the
same run. Milvus runs on Milvus Lite in this process; its hybrid mode is measured with each fusion
``knowledge.fusion`` offers there: medgraph's z-score over the two result lists, and Milvus's own
``hybrid_search`` with its RRF and weighted rankers.

Every metric is over documents: hit@1, hit@10 and MRR@10, with search latency p50/p95.

Run: ``python bench/store_retrieval.py [--limit N] [--data DIR] [--cache DIR]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))

from retrieval_baseline import VectorCache  # noqa: E402


def _default_data() -> Path:
    return Path(os.environ.get("MEDGRAPH_DATA", REPO_ROOT.parent / "shared" / "data")) / "bioasq"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_default_data())
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/medgraph/bench")
    parser.add_argument("--limit", type=int, default=None, help="score the first N questions")
    args = parser.parse_args(argv)

    from medgraph.knowledge.config import KnowledgeSettings
    from medgraph.knowledge.embeddings import SentenceTransformerEmbedder
    from medgraph.knowledge.evaluation import (
        load_questions,
        percentile,
        score_rankings,
        search_rankings,
    )
    from medgraph.knowledge.index import LiteratureIndex

    corpus = args.data / "corpus.jsonl"
    questions = load_questions(args.data / "dev.jsonl")[: args.limit]
    golds = [question.gold_ids for question in questions]
    backend = "onnx-int8"
    passages = VectorCache(args.cache, SentenceTransformerEmbedder(backend=backend))
    stores = {
        "chroma": KnowledgeSettings(
            index_dir=args.cache / "index-bioasq-int8", embedding_backend=backend
        ),
        "milvus": KnowledgeSettings(
            index_dir=args.cache / "index-bioasq-int8-milvus",
            embedding_backend=backend,
            store="milvus",
        ),
    }
    rankings: dict[str, list[list[str]]] = {}
    latencies: dict[str, list[float]] = {}
    builds: dict[str, str] = {}
    for store, settings in stores.items():
        with LiteratureIndex(settings, embedder=passages) as index:  # type: ignore[arg-type]
            started = time.perf_counter()
            report = index.ingest([corpus], progress=True)
            passages.save()
            seconds = time.perf_counter() - started
            builds[store] = (
                f"{report.index_chunks} chunks of {report.index_documents} documents, "
                f"{report.chunks_added} added in {seconds:.0f} s"
            )
            print(f"{store}: {builds[store]}", flush=True)
        fusions = ["zscore", "rrf", "weighted"] if store == "milvus" else ["zscore"]
        for fusion in fusions:
            tuned = settings.model_copy(update={"fusion": fusion})
            with LiteratureIndex(tuned, embedder=passages) as index:  # type: ignore[arg-type]
                modes = ("dense", "lexical", "hybrid") if fusion == "zscore" else ("hybrid",)
                for mode in modes:
                    name = f"{store} {mode}" + (f" ({fusion})" if mode == "hybrid" else "")
                    rankings[name], latencies[name] = search_rankings(index, questions, mode, 10)
                    print(f"  searched {name}", flush=True)

    results = {name: score_rankings(name, ranked, golds, 10) for name, ranked in rankings.items()}
    print()
    print(
        f"== BioASQ dev retrieval, {len(questions)} questions, {os.cpu_count()} CPUs (load "
        f"{os.getloadavg()[0]:.1f}); same int8 MiniLM vectors in both stores"
    )
    print(f"{'method':28} {'hit@1':>7} {'hit@10':>7} {'MRR@10':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for name, metrics in results.items():
        times = latencies[name]
        print(
            f"{name:28} {metrics.hit_at_1:7.3f} {metrics.hit_at_k:7.3f} {metrics.mrr_at_10:7.3f} "
            f"{percentile(times, 50):8.1f} {percentile(times, 95):8.1f}"
        )
    baseline = results["chroma hybrid (zscore)"]
    print("== Milvus hybrid against the Chroma hybrid baseline, same run (MRR@10 difference):")
    for fusion in ("zscore", "rrf", "weighted"):
        ours = results[f"milvus hybrid ({fusion})"]
        print(
            f"   {fusion:8} {ours.mrr_at_10 - baseline.mrr_at_10:+.4f} "
            f"(ratio {ours.mrr_at_10 / baseline.mrr_at_10:.3f}x)"
        )


if __name__ == "__main__":
    main()
