"""Constrained decoding with xgrammar for the transformers engine.

A JSON schema (the tool decision of the bound tools, or a structured-output schema) is compiled once
per tokenizer and schema; every ``generate`` call gets a fresh :class:`GrammarLogitsProcessor`
because xgrammar matchers keep state. Rows of one batch may follow different schemas, or none.

Random or small models can loop inside an open string or number until the token budget runs out,
leaving JSON that never closes. The processor therefore switches to *closing mode* for the last
``reserve`` tokens of the budget: among the tokens the grammar allows, it prefers ones that close
strings, objects and arrays, so every reply ends as schema-valid JSON.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Any

import torch
import xgrammar as xgr
from transformers import LogitsProcessor

_CLOSERS = set('"}]')


def closing_bias(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Per-token preference used in closing mode.

    A lone quote comes first (inside a string it is the only way out; outside one it opens the key
    or value the grammar demands), then brackets and braces, then ``,``, then the shortest tokens.
    """
    bias = torch.full((vocab_size,), -1.0e4)
    # One batched decode: a Python loop over MedGemma's 262k tokens takes tens of seconds.
    texts = tokenizer.batch_decode([[i] for i in range(min(vocab_size, len(tokenizer)))])
    for token_id, text in enumerate(texts):
        stripped = text.strip()
        if stripped.startswith('"') and set(stripped) <= _CLOSERS:
            # Shortest first: where a string opens, '"}' would put a brace inside it.
            bias[token_id] = 2.0e3 - 10.0 * len(stripped)
        elif stripped and set(stripped) <= _CLOSERS:
            bias[token_id] = 1.0e3 + 10.0 * len(stripped)
        elif stripped == ",":
            bias[token_id] = 5.0e2
        elif stripped:
            bias[token_id] = -10.0 * len(stripped)
    return bias


class GrammarCompiler:
    """Compiles JSON schemas against one tokenizer, caching compiled grammars by schema."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]) -> None:
        """Build xgrammar's view of ``tokenizer`` (vocab padded to the model's ``vocab_size``)."""
        self.info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids)
        )
        self._compiler = xgr.GrammarCompiler(self.info)
        self._cache: dict[str, xgr.CompiledGrammar] = {}
        self._lock = threading.Lock()
        self.bias = closing_bias(tokenizer, vocab_size)

    def compile(self, schema: dict[str, Any]) -> xgr.CompiledGrammar:
        """The compiled grammar for ``schema`` (compact JSON, no free whitespace)."""
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            compiled = self._cache.get(key)
            if compiled is None:
                # Compile the schema as given: xgrammar keeps its property order.
                compiled = self._compiler.compile_json_schema(
                    json.dumps(schema), any_whitespace=False, strict_mode=True
                )
                self._cache[key] = compiled
        return compiled

    def processor(
        self, schemas: Sequence[dict[str, Any] | None], budgets: Sequence[int]
    ) -> GrammarLogitsProcessor:
        """A fresh logits processor for one ``generate`` call: a schema and token budget per row."""
        grammars = [self.compile(s) if s is not None else None for s in schemas]
        return GrammarLogitsProcessor(grammars, self.info.vocab_size, budgets, self.bias)


_SHARED: dict[tuple[int, tuple[int, ...], str], GrammarCompiler] = {}
_SHARED_LOCK = threading.Lock()


def shared_compiler(
    tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]
) -> GrammarCompiler:
    """The process's compiler for this vocabulary: models loaded twice with the same tokenizer
    (a folder and its GGUF file, two dtypes) share one setup over the vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer: no cheap fingerprint, so no sharing
        return GrammarCompiler(tokenizer, vocab_size, stop_token_ids)
    # Padding and truncation settings change as the tokenizer is used; they are not the vocabulary.
    spec = json.loads(backend.to_str())
    spec.pop("padding", None)
    spec.pop("truncation", None)
    fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode("utf-8")).hexdigest()
    key = (vocab_size, tuple(stop_token_ids), fingerprint)
    with _SHARED_LOCK:
        compiler = _SHARED.get(key)
        if compiler is None:
            compiler = _SHARED[key] = GrammarCompiler(tokenizer, vocab_size, stop_token_ids)
        return compiler


class GrammarLogitsProcessor(LogitsProcessor):
    """Masks each row's logits to its grammar; rows without a grammar pass through unchanged."""

    def __init__(
        self,
        grammars: Sequence[xgr.CompiledGrammar | None],
        vocab_size: int,
        budgets: Sequence[int],
        bias: torch.Tensor,
        reserve: int | None = None,
    ) -> None:
        """One matcher per row; each row's closing mode starts ``reserve`` tokens before its budget
        ends (default: half the budget, at most 64 tokens)."""
        self.matchers = [xgr.GrammarMatcher(g) if g is not None else None for g in grammars]
        self.bitmask = xgr.allocate_token_bitmask(len(grammars), vocab_size)
        self.vocab_size = vocab_size
        self.closing_from = [
            b - (reserve if reserve is not None else min(64, b // 2)) for b in budgets
        ]
        self.bias = bias
        self.steps = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Accept the previous token in every matcher, then mask the next-token scores."""
        if self.steps > 0:
            for row, matcher in enumerate(self.matchers):
                if matcher is not None and not matcher.is_terminated():
                    matcher.accept_token(int(input_ids[row, -1]))
        self.steps += 1
        rows = [i for i, m in enumerate(self.matchers) if m is not None and not m.is_terminated()]
        if not rows:
            return scores
        device = scores.device
        work = scores.float().cpu() if device.type not in ("cpu", "cuda") else scores.float()
        width = min(work.shape[-1], self.vocab_size)
        for row in rows:
            matcher = self.matchers[row]
            assert matcher is not None
            matcher.fill_next_token_bitmask(self.bitmask, row)
            view = work[row : row + 1, :width].clone()
            xgr.apply_token_bitmask_inplace(view, self.bitmask[row : row + 1].to(view.device))
            if self.steps > self.closing_from[row]:
                allowed = torch.isfinite(view)
                view[allowed] = self.bias[:width].to(view.device)[allowed[0]]
            work[row : row + 1, :width] = view
        if work.shape[-1] > width:
            work[rows, width:] = float("-inf")
        return work.to(device=device, dtype=scores.dtype)  # type: ignore[return-value]
