"""The bytes of every token of a vocabulary, kept in the user cache per tokenizer.

llguidance builds its view of a tokenizer from the tokenizer's JSON: for MedGemma's 262,144 tokens
that takes about 10 s on a 2-core machine, once per process. Built from the token bytes instead
it takes about a third of that, and the same bytes give the closing-mode table without decoding
the vocabulary through ``transformers``. The first process on a machine builds the view from the
JSON and stores the bytes under ``~/.cache/medgraph/grammar`` (``MEDGRAPH_GRAMMAR_CACHE``), keyed
by the tokenizer's fingerprint, the vocabulary size and the llguidance version; later processes
read them back. A file that is unreadable or fails its checksum is rebuilt.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llguidance
import numpy as np

from medgraph.cache import user_cache_dir

logger = logging.getLogger(__name__)

_MAGIC = b"medgraph-token-table 1\n"
_HEADER = struct.Struct("<II")  # token count, special token count


@dataclass(frozen=True)
class TokenTable:
    """Every token's bytes (index = token id) and the ids llguidance treats as special."""

    tokens: list[bytes]
    special: list[int]


@dataclass(frozen=True)
class PlainTokenizer:
    """A tokenizer's JSON without its padding and truncation settings (they change as the
    tokenizer is used; they are not the vocabulary), and that JSON's sha256."""

    spec: str
    fingerprint: str

    @classmethod
    def of(cls, tokenizer: Any) -> PlainTokenizer:
        """``tokenizer`` (a fast ``transformers`` tokenizer) as a :class:`PlainTokenizer`."""
        backend = tokenizer.backend_tokenizer
        if backend.padding is not None or backend.truncation is not None:
            # Copying a backend serialises and parses it (seconds for a 262k vocabulary): only
            # where there are settings to drop.
            backend = copy.copy(backend)
            backend.no_padding()
            backend.no_truncation()
        spec = backend.to_str()
        return cls(spec, hashlib.sha256(spec.encode("utf-8")).hexdigest())


def table_path(fingerprint: str, n_vocab: int) -> Path:
    """Where the table of the tokenizer with ``fingerprint`` over ``n_vocab`` ids lives."""
    folder = user_cache_dir("grammar", "MEDGRAPH_GRAMMAR_CACHE")
    return folder / f"{fingerprint}-{n_vocab}-llguidance{llguidance.__version__}.tokens"


def table_from(tokenizer: llguidance.LLTokenizer, n_vocab: int) -> TokenTable:
    """The bytes of each of ``n_vocab`` tokens as ``tokenizer`` sees them."""
    ids = range(n_vocab)
    return TokenTable(
        tokens=[tokenizer.decode_bytes([i]) for i in ids],
        special=[i for i in ids if tokenizer.is_special_token(i)],
    )


def write_table(path: Path, table: TokenTable) -> None:
    """Store ``table`` at ``path`` atomically (a reader sees the old file or the whole new one)."""
    lengths = np.fromiter((len(t) for t in table.tokens), dtype="<u4", count=len(table.tokens))
    special = np.asarray(table.special, dtype="<u4")
    payload = lengths.tobytes() + special.tobytes() + b"".join(table.tokens)
    header = _HEADER.pack(len(table.tokens), len(table.special))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, delete=False) as out:
        out.write(_MAGIC + header + hashlib.sha256(payload).digest() + payload)
    os.replace(out.name, path)


def read_table(path: Path, n_vocab: int) -> TokenTable | None:
    """The table stored at ``path`` if it is whole and has ``n_vocab`` tokens; else None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        logger.warning("cannot read the token table %s (%s); rebuilding it", path, error)
        return None
    start = len(_MAGIC) + _HEADER.size + 32
    if len(data) < start or not data.startswith(_MAGIC):
        return _corrupt(path)
    count, n_special = _HEADER.unpack_from(data, len(_MAGIC))
    payload = memoryview(data)[start:]
    digest = data[start - 32 : start]
    if count != n_vocab or hashlib.sha256(payload).digest() != digest:
        return _corrupt(path)
    lengths = np.frombuffer(payload, dtype="<u4", count=count)
    special = np.frombuffer(payload, dtype="<u4", count=n_special, offset=4 * count)
    blob = bytes(payload[4 * (count + n_special) :])
    if int(lengths.sum()) != len(blob):
        return _corrupt(path)
    ends = np.cumsum(lengths).tolist()
    starts = [0, *ends[:-1]]
    return TokenTable(
        tokens=[blob[a:b] for a, b in zip(starts, ends, strict=True)],
        special=special.tolist(),
    )


def _corrupt(path: Path) -> TokenTable | None:
    """Log that the table at ``path`` is unusable; None (the caller rebuilds it)."""
    logger.warning("the token table %s is damaged or stale; rebuilding it", path)
    return None


class CachedVocabulary:
    """What :class:`llguidance.TokenizerWrapper` needs of a tokenizer, from a :class:`TokenTable`;
    text is still tokenized by the tokenizer itself."""

    def __init__(self, tokenizer: Any, table: TokenTable, eos: int) -> None:
        """``tokenizer``: the ``transformers`` tokenizer ``table`` was built from; ``eos``: the
        id that ends a reply."""
        self.tokens: Sequence[bytes] = table.tokens
        self.special_token_ids: Sequence[int] = table.special
        self.eos_token_id = eos
        self.bos_token_id: int | None = tokenizer.bos_token_id
        self._tokenizer = tokenizer

    def __call__(self, text: bytes) -> list[int]:
        """Token ids of ``text`` (UTF-8), with no special tokens added, padding or truncation."""
        decoded = text.decode("utf-8", errors="replace")
        return list(self._tokenizer(decoded, add_special_tokens=False)["input_ids"])
