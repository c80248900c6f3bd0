"""Retrieval on the BioASQ dev set: medgraph's three modes beside a plain baseline, in one run.

The named baseline (the one issue 12 quotes) ranks whole documents (title + text):

- ``bm25s``: bm25s with its default English stopwords and no stemmer (``bm25s.tokenize``);
- ``minilm``: the packaged all-MiniLM-L6-v2, loaded as medgraph loads it, cosine over whole
  documents (the model reads the first 256 tokens);
- ``rrf``: reciprocal rank fusion (k=60) of the two, each ranking 100 documents deep.

medgraph's ``lexical``, ``dense`` and ``hybrid`` modes are searched as ``medgraph eval retrieval``
searches them (:func:`medgraph.knowledge.evaluation.search_rankings`) on an index built by
:meth:`LiteratureIndex.ingest` from the same corpus. Every metric is over documents: hit@1, hit@10
and MRR@10, for the first half of the questions (the half ranking changes were tuned on), the
second half (a check) and all. The printed ratios divide each medgraph mode by its plain
counterpart of the same run (dense by minilm, lexical by bm25s, hybrid by rrf).

Embedding the 13k records takes minutes on a CPU, so vectors are cached by text (and model) under
``~/.cache/medgraph/bench`` (``--cache``), and so is the index, which a later run updates in place
(ingest is incremental); nothing is written into the repository.

``--backends onnx,onnx-int8`` builds and searches one index per embedding backend in the same run,
beside the one plain baseline (whose dense side always embeds in fp32): fp32-family backends
(``onnx``, ``torch``) use ``index-bioasq``, ``onnx-int8`` uses ``index-bioasq-int8``, and int8
vectors are cached in a file of their own.

Run: ``python bench/retrieval_baseline.py [--limit N] [--documents M] [--data DIR] [--cache DIR]
[--backends LIST]`` (``--limit``: score only the first N dev questions; ``--documents``: a
smoke-test corpus of the gold documents of those questions plus the first M others, scored apart
from the whole corpus).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO_ROOT = Path(__file__).resolve().parents[1]
RRF_K = 60
BASELINE_DEPTH = 100


def _default_data() -> Path:
    return Path(os.environ.get("MEDGRAPH_DATA", REPO_ROOT.parent / "shared" / "data")) / "bioasq"


class VectorCache:
    """Passage vectors of one embedder kept on disk by the sha256 of their text.

    The file is keyed by the embedder's identity and, for int8 vectors, its vector family, so
    vectors of one family are never served to an index of another (fp32 files keep their old key).
    """

    def __init__(self, folder: Path, embedder: object) -> None:
        self.inner = embedder
        identity = dict(embedder.identity)  # type: ignore[attr-defined]
        family = getattr(embedder, "vector_family", "fp32")
        if family != "fp32":
            identity["vector_family"] = family
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        self.path = folder / f"vectors-{key}.npz"
        self.vectors: dict[str, npt.NDArray[np.float32]] = {}
        if self.path.is_file():
            saved = np.load(self.path)
            self.vectors = dict(zip(saved["keys"].tolist(), saved["vectors"], strict=True))
        self.embedded = 0

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def save(self) -> None:
        """Write the cache (atomically: a killed run leaves the previous file)."""
        if not self.vectors:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial.npz")
        keys = list(self.vectors)
        np.savez(partial, keys=np.asarray(keys), vectors=np.stack([self.vectors[k] for k in keys]))
        partial.replace(self.path)

    # -- the Embedder protocol, passages served from the cache ---------------------------------

    @property
    def identity(self) -> dict[str, str]:
        return self.inner.identity  # type: ignore[attr-defined,no-any-return]

    @property
    def dimension(self) -> int:
        return self.inner.dimension  # type: ignore[attr-defined,no-any-return]

    @property
    def backend(self) -> str:
        return self.inner.backend  # type: ignore[attr-defined,no-any-return]

    @property
    def requested_backend(self) -> str:
        return self.inner.requested_backend  # type: ignore[attr-defined,no-any-return]

    @property
    def vector_family(self) -> str:
        return self.inner.vector_family  # type: ignore[attr-defined,no-any-return]

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens  # type: ignore[attr-defined,no-any-return]

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)  # type: ignore[attr-defined,no-any-return]

    def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        keys = [self._key(text) for text in texts]
        missing = {
            key: text for key, text in zip(keys, texts, strict=True) if key not in self.vectors
        }
        if missing:
            fresh = self.inner.embed_documents(list(missing.values()))  # type: ignore[attr-defined]
            self.vectors.update(zip(missing, np.asarray(fresh, dtype=np.float32), strict=True))
            self.embedded += len(missing)
            if self.embedded >= 2000:  # keep progress on a long first run
                self.save()
                self.embedded = 0
        return np.stack([self.vectors[key] for key in keys])

    def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self.inner.embed_queries(texts)  # type: ignore[attr-defined,no-any-return]


def _baseline_rankings(
    documents: Sequence[object], questions: Sequence[str], cache: VectorCache
) -> dict[str, list[list[str]]]:
    import bm25s

    ids = [document.source_id for document in documents]  # type: ignore[attr-defined]
    whole = [
        f"{document.title}\n{document.text}" if document.title else document.text  # type: ignore[attr-defined]
        for document in documents
    ]
    bm25 = bm25s.BM25()
    bm25.index(bm25s.tokenize(whole, stopwords="en", show_progress=False), show_progress=False)
    hits, _ = bm25.retrieve(
        bm25s.tokenize(list(questions), stopwords="en", show_progress=False),
        k=BASELINE_DEPTH,
        show_progress=False,
    )
    lexical = [[ids[int(i)] for i in row] for row in np.asarray(hits)]

    print(f"baseline: embedding {len(whole)} whole documents (cached by text)", flush=True)
    matrix = cache.embed_documents(whole)
    cache.save()
    queries = cache.embed_queries(list(questions))
    similarities = queries @ matrix.T
    top = np.argsort(-similarities, axis=1)[:, :BASELINE_DEPTH]
    dense = [[ids[int(i)] for i in row] for row in top]

    from medgraph.knowledge.fusion import reciprocal_rank_fusion

    fused = [
        [item.item_id for item in reciprocal_rank_fusion({"bm25s": b, "minilm": d}, k=RRF_K)]
        for b, d in zip(lexical, dense, strict=True)
    ]
    return {"bm25s": lexical, "minilm": dense, "rrf": fused}


def _write_subset(source: Path, keep: set[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open(encoding="utf-8") as lines, target.open("w", encoding="utf-8") as out:
        for line in lines:
            if line.strip() and str(json.loads(line)["pmid"]) in keep:
                out.write(line)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_default_data())
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/medgraph/bench")
    parser.add_argument("--limit", type=int, default=None, help="score the first N questions")
    parser.add_argument(
        "--documents", type=int, default=None, help="corpus: the gold documents plus M others"
    )
    parser.add_argument(
        "--backends",
        default="onnx",
        help="comma-separated embedding backends, one medgraph index each (default onnx)",
    )
    args = parser.parse_args(argv)
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]

    from medgraph.knowledge.config import KnowledgeSettings
    from medgraph.knowledge.embeddings import SentenceTransformerEmbedder, vector_family
    from medgraph.knowledge.evaluation import (
        load_questions,
        percentile,
        score_rankings,
        search_rankings,
    )
    from medgraph.knowledge.index import LiteratureIndex
    from medgraph.knowledge.readers import read_paths

    corpus = args.data / "corpus.jsonl"
    questions = load_questions(args.data / "dev.jsonl")[: args.limit]
    documents = read_paths([corpus]).documents
    # The plain baseline embeds in fp32 whatever medgraph's default backend is.
    cache = VectorCache(args.cache, SentenceTransformerEmbedder(backend="onnx"))
    golds = [question.gold_ids for question in questions]
    index_name = "index-bioasq"
    if args.documents is not None:
        gold = {source_id for ids in golds for source_id in ids}
        others = [d for d in documents if d.source_id not in gold][: args.documents]
        documents = [d for d in documents if d.source_id in gold] + others
        corpus = args.cache / f"bioasq-{len(questions)}q-{args.documents}d.jsonl"
        _write_subset(args.data / "corpus.jsonl", {d.source_id for d in documents}, corpus)
        index_name = f"index-{corpus.stem}"

    rankings: dict[str, list[list[str]]] = {}
    latencies: dict[str, list[float]] = {}
    baseline = _baseline_rankings(documents, [q.question for q in questions], cache)
    for name, ranked in baseline.items():
        rankings[f"plain {name}"] = [r[:10] for r in ranked]

    for backend in backends:
        embedder = SentenceTransformerEmbedder(backend=backend)
        family = vector_family(backend)
        suffix = "" if family == "fp32" else f"-{family}"
        settings = KnowledgeSettings(
            index_dir=args.cache / f"{index_name}{suffix}", embedding_backend=backend
        )
        passages = cache if family == "fp32" else VectorCache(args.cache, embedder)
        with LiteratureIndex(settings, embedder=passages) as index:  # type: ignore[arg-type]
            started = time.perf_counter()
            report = index.ingest([corpus], progress=True)
            passages.save()
            print(
                f"medgraph index ({backend}): {report.index_chunks} chunks of "
                f"{report.index_documents} documents ({report.chunks_added} embedded or taken "
                f"from the cache, {time.perf_counter() - started:.0f} s, load "
                f"{os.getloadavg()[0]:.1f})",
                flush=True,
            )
            for mode in ("dense", "lexical", "hybrid"):
                ranked, times = search_rankings(index, questions, mode, 10)
                name = f"{mode} [{backend}]"
                rankings[name], latencies[name] = ranked, times

    half = len(questions) // 2
    parts = {
        f"first {half}": slice(0, half),
        f"second {len(questions) - half}": slice(half, None),
        f"all {len(questions)}": slice(None),
    }
    if half == 0:
        parts = {f"all {len(questions)}": slice(None)}
    results = {
        part: {
            name: score_rankings(name, ranked[where], golds[where], 10)
            for name, ranked in rankings.items()
        }
        for part, where in parts.items()
    }

    print()
    print(
        f"== retrieval on {args.data.name} dev ({len(questions)} questions, {len(documents)} "
        f"documents), {os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f}); "
        f"hit@1 / hit@10 / MRR@10 per question set"
    )
    print(f"{'method':26} " + " ".join(f"{part:>20}" for part in parts) + "  p50 ms  p95 ms")
    for name in rankings:
        cells = " ".join(
            f"{m.hit_at_1:6.3f} {m.hit_at_k:6.3f} {m.mrr_at_10:6.3f}"
            for m in (results[part][name] for part in parts)
        )
        times = latencies.get(name)
        timing = (
            f"{percentile(times, 50):7.1f} {percentile(times, 95):7.1f}"
            if times
            else f"{'-':>7} {'-':>7}"
        )
        print(f"{name:26} {cells} {timing}")
    print("== medgraph / its plain counterpart, same run (MRR@10 ratio, hit@10 ratio):")
    for backend in backends:
        for mode, plain in (("dense", "minilm"), ("lexical", "bm25s"), ("hybrid", "rrf")):
            ratios = []
            for part in parts:
                ours = results[part][f"{mode} [{backend}]"]
                theirs = results[part][f"plain {plain}"]
                ratios.append(
                    f"{part}: {ours.mrr_at_10 / theirs.mrr_at_10:.3f}x, "
                    f"{ours.hit_at_k / theirs.hit_at_k:.3f}x"
                )
            print(f"   {mode:8} [{backend}] / {plain:7} " + "; ".join(ratios))


if __name__ == "__main__":
    main()
