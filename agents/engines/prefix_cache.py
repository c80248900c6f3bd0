"""Reuse the key/value cache of a prompt prefix that many requests share.

Every tool decision starts with the same rendered tool list (several hundred tokens with MedGemma's
tokenizer), and a batch of decisions differs only in the user's words after it. Prefilling that
prefix once and each row's own tokens on top of a copy turns ``rows x prompt`` tokens of prefill
into ``prompt + rows x suffix``; on a CPU, prefill is most of a decision's time.

The rows are then stacked into one left-padded ``DynamicCache`` laid out exactly as a plain padded
``generate`` would lay it out (pads first, masked; sliding-window layers keep their last
``window - 1`` positions), so ``generate`` decodes the batch as if it had prefilled it itself.
Only text-only batches on models whose cache layers are plain ``DynamicLayer`` /
``DynamicSlidingWindowLayer`` take this path; anything else prefills as usual.
"""

from __future__ import annotations

import copy
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache

try:  # cache layers arrived in transformers 4.56; older versions prefill as usual
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
except ImportError:  # pragma: no cover - depends on the installed transformers
    DynamicLayer = DynamicSlidingWindowLayer = None  # type: ignore[assignment,misc]

# Below this many shared tokens a separate prefix pass saves less than it costs.
MIN_PREFIX_TOKENS = 64
# Prompt tokens prefilled between two looks at a deadline (about a second or two on a busy CPU).
PREFILL_CHUNK_TOKENS = 256


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


class PrefixCache:
    """The caches of one model's last few shared prefixes, and batch caches built on them."""

    def __init__(self, capacity: int = 4, min_tokens: int = MIN_PREFIX_TOKENS) -> None:
        """Keep at most ``capacity`` prefixes; share only prefixes of ``min_tokens`` or more."""
        self.capacity = capacity
        self.min_tokens = min_tokens
        self._entries: OrderedDict[tuple[int, ...], DynamicCache] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        """Forget every stored prefix (the hit and miss counts stay)."""
        with self._lock:
            self._entries.clear()

    def past_key_values(
        self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> DynamicCache | None:
        """A cache of every row's tokens but the last, for a left-padded batch; ``None`` where no
        prefix is worth sharing (``generate`` then prefills as usual)."""
        if DynamicLayer is None:
            return None
        rows = [
            ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)
        ]
        # Every row keeps at least one token of its own for generate to run on.
        limit = min(len(r) for r in rows) - 1
        with self._lock:
            key = self._stored_prefix(rows, limit)
            if key is None:
                shared = min(common_prefix_length(rows), limit)
                if len(rows) < 2 or shared < self.min_tokens:
                    return None
                key = tuple(rows[0][:shared])
                prefix = self._prefill(model, list(key), DynamicCache(config=model.config))
                if prefix is None:
                    return None
                self._entries[key] = prefix
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
                self.misses += 1
            else:
                self.hits += 1
            self._entries.move_to_end(key)
            prefix = self._entries[key]
        caches = []
        for row in rows:
            cache = self._prefill(model, row[len(key) : -1], copy.deepcopy(prefix))
            if cache is None:
                return None
            caches.append(cache)
        return _stack_left_padded(caches, [len(r) - 1 for r in rows])

    def _stored_prefix(self, rows: list[list[int]], limit: int) -> tuple[int, ...] | None:
        """The longest stored prefix that starts every row."""
        best: tuple[int, ...] | None = None
        for key in self._entries:
            longer = best is None or len(key) > len(best)
            if longer and len(key) <= limit and all(tuple(r[: len(key)]) == key for r in rows):
                best = key
        return best

    @staticmethod
    def _prefill(model: Any, tokens: list[int], cache: DynamicCache) -> DynamicCache | None:
        plain = (DynamicLayer, DynamicSlidingWindowLayer)
        if not all(type(layer) in plain for layer in cache.layers):
            return None
        if tokens:
            ids = torch.tensor([tokens], dtype=torch.long, device=model.device)
            with torch.inference_mode():
                arguments = {cache_argument(model): cache}
                model(input_ids=ids, use_cache=True, logits_to_keep=1, **arguments)
        return cache


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
    if DynamicLayer is None:
        return None
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)]
    caches = []
    for row in rows:
        cache: DynamicCache | None = DynamicCache(config=model.config)
        tokens = row[:-1]
        for start in range(0, len(tokens), chunk_tokens):
            if time.time() >= deadline:
                raise PrefillTimeout(f"prefill stopped at token {start} of {len(tokens)}")
            assert cache is not None
            cache = PrefixCache._prefill(model, tokens[start : start + chunk_tokens], cache)
            if cache is None:
                return None
        assert cache is not None
        caches.append(cache)
    return _stack_left_padded(caches, [len(r) - 1 for r in rows])


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
