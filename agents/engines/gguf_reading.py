"""One parse of a GGUF file per model load, shared by transformers' GGUF loader.

Loading a GGUF file through transformers (config, tokenizer, weights) constructs the ``gguf``
package's ``GGUFReader`` once for every one of those parts, and each construction parses the whole
metadata again: for Gemma 3's 262,144-token vocabulary that is about 21 s on one core, most of it
in ``numpy.memmap``'s Python-level indexing of one small slice per token. While
:func:`shared_gguf_reader` is open, transformers gets one reader per file, built by
:class:`PlainArrayReader`, which slices a plain array view of the same mapped file (same fields,
same tensors, about 3x faster).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gguf
import numpy as np
from gguf import GGUFReader

_LOCK = threading.Lock()
_HOLDERS = 0
_READERS: dict[tuple[str, str], GGUFReader] = {}


class PlainArrayReader(GGUFReader):
    """``GGUFReader`` that slices a plain ``ndarray`` view of the mapped file, not the memmap."""

    def _get(
        self,
        offset: int,
        dtype: Any,
        count: int = 1,
        override_order: Any = None,
    ) -> Any:
        plain = self.__dict__.get("_plain")
        if plain is None:
            # The constructor sets ``data`` (the memmap) before its first read.
            plain = self.data.view(np.ndarray)
            self.__dict__["_plain"] = plain
        kind = np.dtype(dtype)
        count = int(count)
        values = plain[offset : offset + kind.itemsize * count].view(kind)[:count]
        order = self.byte_order if override_order is None else override_order
        return values.view(values.dtype.newbyteorder(order))


def _shared_reader(path: Any, mode: Any = "r") -> GGUFReader:
    key = (str(path), str(mode))
    with _LOCK:
        reader = _READERS.get(key)
    if reader is None:
        reader = PlainArrayReader(path, mode)
        with _LOCK:
            reader = _READERS.setdefault(key, reader)
    return reader


@contextmanager
def shared_gguf_reader() -> Iterator[None]:
    """While open, transformers reads each GGUF file once, with :class:`PlainArrayReader`.

    transformers imports ``GGUFReader`` from the ``gguf`` package when it loads a file, so the
    name is swapped there for the time of the block (nested and concurrent blocks share one
    swap) and put back, with the readers forgotten, when the last block closes.
    """
    global _HOLDERS
    with _LOCK:
        _HOLDERS += 1
        if _HOLDERS == 1:
            gguf.GGUFReader = _shared_reader  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        with _LOCK:
            _HOLDERS -= 1
            if _HOLDERS == 0:
                gguf.GGUFReader = GGUFReader  # type: ignore[misc]
                _READERS.clear()
