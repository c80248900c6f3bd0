"""Reuse the key/value cache of a prompt prefix that an earlier prompt already ran.

Most prompt tokens of a turn were prefilled before: every tool decision starts with the same
instructions and rendered tool list, a reasoner's second step repeats its first step's system text,
and a batch of decisions differs only in the user's words after it. Each prompt's cache is kept
(the last few per model) with the keys and values of every position, sliding-window layers
included, so a later prompt starts from the longest prefix it shares with any stored one, wherever
that prefix ends, and prefills only the rest. Keys and values of a position depend only on the
tokens up to it, so the reused part is what a fresh prefill would compute.

A batch's rows are then stacked into one left-padded ``DynamicCache`` laid out exactly as a plain
padded ``generate`` would lay it out (pads first, masked; sliding-window layers keep their last
``window - 1`` positions), so ``generate`` decodes the batch as if it had prefilled it itself.
Only text-only batches on models whose cache layers are plain ``DynamicLayer`` /
``DynamicSlidingWindowLayer`` take this path; anything else prefills as usual.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

try:  # cache layers arrived in transformers 4.56; older versions prefill as usual
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
except ImportError:  # pragma: no cover - depends on the installed transformers
    DynamicLayer = DynamicSlidingWindowLayer = None  # type: ignore[assignment,misc]

# Below this many shared tokens reusing a stored prefix saves less than copying it costs.
MIN_PREFIX_TOKENS = 64
# Prompt tokens prefilled between two looks at a deadline (about a second or two on a busy CPU).
PREFILL_CHUNK_TOKENS = 256
# Stored prompts per model. Each holds every position's keys and values: about 37 kB a token for
# Gemma 3 270M in float32, 0.5 MB a token for MedGemma 27B in bfloat16.
PREFIX_CAPACITY = 2


class PrefillTimeout(Exception):
    """A deadline passed while a prompt was being prefilled."""


def cache_argument(model: Any) -> str:
    """The keyword under which ``model`` takes a cache (``cache`` since transformers 5.x)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix all ``rows`` share."""
    if not rows:
        return 0
    shortest = min(len(r) for r in rows)
    for position in range(shortest):
        token = rows[0][position]
        if any(row[position] != token for row in rows[1:]):
            return position
    return shortest


@dataclass(frozen=True)
class _Stored:
    """One prefilled prompt: its tokens and, per layer, the keys and values of every token."""

    tokens: tuple[int, ...]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    def cache(self, model: Any, length: int) -> DynamicCache:
        """A fresh cache of this prompt's first ``length`` tokens (the stored tensors are only
        read: ``update`` concatenates into new ones)."""
        cache = DynamicCache(config=model.config)
        for index, (keys, values) in enumerate(zip(self.keys, self.values, strict=True)):
            cache.update(keys[..., :length, :], values[..., :length, :], index)
        return cache


class PrefixCache:
    """The caches of one model's last few prompts, and batch caches built on them."""

    def __init__(
        self, capacity: int = PREFIX_CAPACITY, min_tokens: int = MIN_PREFIX_TOKENS
    ) -> None:
        """Keep at most ``capacity`` prompts; reuse only prefixes of ``min_tokens`` or more."""
        self.capacity = capacity
        self.min_tokens = min_tokens
        self._entries: OrderedDict[tuple[int, ...], _Stored] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.reused_tokens = 0

    def clear(self) -> None:
        """Forget every stored prompt (the counts stay)."""
        with self._lock:
            self._entries.clear()

    def past_key_values(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        deadline: float | None = None,
        chunk_tokens: int = PREFILL_CHUNK_TOKENS,
    ) -> DynamicCache | None:
        """A cache of every row's tokens but the last, for a left-padded batch, each row started
        from the longest prefix it shares with a stored prompt (and stored in turn); ``None``
        where the cache layers are not plain dynamic ones (``generate`` then prefills as usual).

        With a ``deadline``, raises :class:`PrefillTimeout` once ``time.time()`` passes it
        between two chunks of ``chunk_tokens``.
        """
        return _prompt_cache(model, input_ids, attention_mask, deadline, chunk_tokens, self)

    def _longest(self, tokens: Sequence[int]) -> tuple[_Stored | None, int]:
        """The stored prompt sharing the longest prefix with ``tokens``, and that length."""
        best: _Stored | None = None
        shared = 0
        for entry in self._entries.values():
            length = common_prefix_length([entry.tokens, tokens])
            if length > shared:
                best, shared = entry, length
        if best is None or shared < self.min_tokens:
            return None, 0
        self._entries.move_to_end(best.tokens)
        return best, shared

    def _store(self, entry: _Stored) -> None:
        # A stored prompt that starts the new one can only ever share less: drop it.
        for tokens in list(self._entries):
            if entry.tokens[: len(tokens)] == tokens:
                del self._entries[tokens]
        self._entries[entry.tokens] = entry
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def _row(
        self, model: Any, tokens: list[int], deadline: float | None, chunk_tokens: int
    ) -> DynamicCache | None:
        """The cache of ``tokens``, from a stored prefix where one is long enough."""
        with self._lock:
            entry, start = self._longest(tokens)
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
                self.reused_tokens += start
        cache = DynamicCache(config=model.config) if entry is None else entry.cache(model, start)
        keys: list[list[torch.Tensor]] = [[] for _ in cache.layers]
        values: list[list[torch.Tensor]] = [[] for _ in cache.layers]
        if entry is not None:
            for index in range(len(cache.layers)):
                keys[index].append(entry.keys[index][..., :start, :])
                values[index].append(entry.values[index][..., :start, :])
        filled = _prefill_chunks(
            model, tokens[start:], cache, deadline, chunk_tokens, (keys, values)
        )
        if filled is None:
            return None
        if len(tokens) >= self.min_tokens:
            stored = _Stored(
                tuple(tokens),
                [torch.cat(parts, dim=-2) for parts in keys],
                [torch.cat(parts, dim=-2) for parts in values],
            )
            with self._lock:
                self._store(stored)
        return filled


def prefill_within(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    deadline: float,
    chunk_tokens: int = PREFILL_CHUNK_TOKENS,
) -> DynamicCache | None:
    """A cache of every row's tokens but the last (left-padded like ``past_key_values``),
    prefilled ``chunk_tokens`` at a time so that a long prompt can stop at ``deadline``.

    A single forward pass over a prompt of thousands of tokens cannot be interrupted, and on a
    busy CPU it can outlast a turn's whole time limit; ``generate``'s own ``max_time`` is only
    checked between decoded tokens. Raises :class:`PrefillTimeout` once ``time.time()`` passes
    ``deadline`` between chunks; returns ``None`` where the cache layers are not plain dynamic
    ones (``generate`` then prefills as usual).
    """
    return _prompt_cache(model, input_ids, attention_mask, deadline, chunk_tokens, None)


def _prompt_cache(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    deadline: float | None,
    chunk_tokens: int,
    reuse: PrefixCache | None,
) -> DynamicCache | None:
    if DynamicLayer is None:
        return None
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)]
    caches = []
    for row in rows:
        if reuse is not None:
            cache = reuse._row(model, row[:-1], deadline, chunk_tokens)
        else:
            empty = DynamicCache(config=model.config)
            cache = _prefill_chunks(model, row[:-1], empty, deadline, chunk_tokens, None)
        if cache is None:
            return None
        caches.append(cache)
    return _stack_left_padded(caches, [len(r) - 1 for r in rows])


def _prefill_chunks(
    model: Any,
    tokens: list[int],
    cache: DynamicCache,
    deadline: float | None,
    chunk_tokens: int,
    record: tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]] | None,
) -> DynamicCache | None:
    """Prefill ``tokens`` into ``cache`` in chunks, looking at ``deadline`` between them;
    ``record`` collects every chunk's keys and values per layer."""
    windows = [layer.sliding_window for layer in cache.layers if hasattr(layer, "sliding_window")]
    # A sliding layer keeps its last window - 1 positions: a chunk no longer than that is all
    # still there to record after its forward pass.
    step = min([chunk_tokens, *(w - 1 for w in windows)]) if record is not None else chunk_tokens
    if not tokens:
        return _forward(model, [], cache)
    for start in range(0, len(tokens), step):
        if deadline is not None and time.time() >= deadline:
            raise PrefillTimeout(f"prefill stopped at token {start} of {len(tokens)}")
        piece = tokens[start : start + step]
        filled = _forward(model, piece, cache)
        if filled is None:
            return None
        if record is not None:
            layers: list[Any] = list(filled.layers)  # plain dynamic layers (checked above)
            for index, layer in enumerate(layers):
                record[0][index].append(layer.keys[..., -len(piece) :, :].clone())
                record[1][index].append(layer.values[..., -len(piece) :, :].clone())
    return cache


def _forward(model: Any, tokens: list[int], cache: DynamicCache) -> DynamicCache | None:
    """Run ``tokens`` through ``model`` into ``cache``; None where its layers are not plain."""
    plain = (DynamicLayer, DynamicSlidingWindowLayer)
    if not all(type(layer) in plain for layer in cache.layers):
        return None
    if tokens:
        ids = torch.tensor([tokens], dtype=torch.long, device=model.device)
        with torch.inference_mode():
            arguments = {cache_argument(model): cache}
            model(input_ids=ids, use_cache=True, logits_to_keep=1, **arguments)
    return cache


def _stack_left_padded(caches: list[DynamicCache], lengths: list[int]) -> DynamicCache:
    """One batch cache from single-row caches of ``lengths`` tokens, short rows padded left."""
    total = max(lengths)
    merged = caches[0]
    layers: list[Any] = list(merged.layers)  # all DynamicLayer / DynamicSlidingWindowLayer
    for index, layer in enumerate(layers):
        sliding = isinstance(layer, DynamicSlidingWindowLayer)
        width = min(total, layer.sliding_window - 1) if sliding else total
        keys, values = [], []
        for cache in caches:
            row: Any = cache.layers[index]
            pad = width - row.keys.shape[-2]
            keys.append(torch.nn.functional.pad(row.keys, (0, 0, pad, 0)))
            values.append(torch.nn.functional.pad(row.values, (0, 0, pad, 0)))
        layer.keys = torch.cat(keys, dim=0)
        layer.values = torch.cat(values, dim=0)
        if sliding:
            layer.cumulative_length = total
    return merged
