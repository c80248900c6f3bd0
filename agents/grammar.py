"""Constrained decoding with llguidance for the transformers engine.

A JSON schema (the tool decision of the bound tools, or a structured-output schema) is compiled once
per tokenizer and schema into a matcher at the start of the grammar; every ``generate`` row gets its
own copy of it inside a fresh :class:`GrammarLogitsProcessor`, because matchers keep state. Rows of
one batch may follow different schemas, or none.

Random or small models can loop inside an open string or number until the token budget runs out,
leaving JSON that never closes. The processor therefore switches to *closing mode* for the last
``reserve`` tokens of the budget: among the tokens the grammar allows, it prefers ones that close
strings, numbers, literals, objects and arrays, so every reply ends as schema-valid JSON.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import llguidance
import llguidance.numpy
import numpy as np
import torch
from transformers import LogitsProcessor

from medgraph.agents.token_table import (
    CachedVocabulary,
    PlainTokenizer,
    TokenTable,
    read_table,
    table_from,
    table_path,
    write_table,
)
from medgraph.errors import ConfigurationError

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

logger = logging.getLogger(__name__)

NUMBER_DECIMALS = 6
"""Most decimals the grammar lets a JSON number have (and it never allows an exponent)."""

# Compact JSON with the separators of ``json.dumps``: no free whitespace for a model to loop in.
# lenient: keywords llguidance cannot enforce (uniqueItems, unknown formats) are left to the
# validator, which checks every argument against the tool's own schema.
_JSON_OPTIONS: JsonCompileOptions = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "lenient": True,
}
# Subschemas whose values are values of the whole (narrowing them narrows it; not "not" or "if").
_SUBSCHEMA_KEYS = ("items", "additionalProperties", "then", "else", "contains")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
# Keywords with which a schema says what its undeclared keys may be.
_EXTRA_KEYS = frozenset({"additionalProperties", "patternProperties", "unevaluatedProperties"})
_CLOSERS = set('"}]')


class GrammarError(ConfigurationError, ValueError):
    """A schema or tokenizer that constrained decoding cannot use."""


def grammar_schema(schema: Any, *, close: bool = True) -> Any:
    """``schema`` as the grammar enforces it, narrowed so that every value it allows is bounded.

    Objects without ``additionalProperties`` are closed to undeclared keys (JSON Schema would allow
    any extra key with any value), and numbers without ``multipleOf`` get at most
    :data:`NUMBER_DECIMALS` decimals and no exponent. Validation still uses the original schema.
    ``close=False`` leaves the top object open (a branch of an ``allOf`` whose siblings declare
    the other keys).
    """
    if isinstance(schema, list):
        return [grammar_schema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    narrowed: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SUBSCHEMA_KEYS or key in _SUBSCHEMA_LISTS:
            narrowed[key] = grammar_schema(value)
        elif key == "allOf" and isinstance(value, list):
            narrowed[key] = [grammar_schema(item, close=len(value) == 1) for item in value]
        elif key in _SUBSCHEMA_MAPS and isinstance(value, Mapping):
            narrowed[key] = {name: grammar_schema(sub) for name, sub in value.items()}
        else:
            narrowed[key] = value
    declared = schema.get("type")
    types = {declared} if isinstance(declared, str) else set(declared or ())
    if "enum" in schema or "const" in schema:
        return narrowed
    is_object = "object" in types or "properties" in schema
    if close and is_object and not _EXTRA_KEYS & set(schema):
        narrowed["additionalProperties"] = False
    if "number" in types and "multipleOf" not in schema:
        narrowed["multipleOf"] = 10.0**-NUMBER_DECIMALS
    return narrowed


def json_grammar(schema: Mapping[str, Any]) -> str:
    """The llguidance grammar for ``schema``: compact JSON, bounded by :func:`grammar_schema`."""
    return str(
        llguidance.LLMatcher.grammar_from_json_schema(
            json.dumps(grammar_schema(schema)), defaults=_JSON_OPTIONS
        )
    )


def closing_bias(tokens: Sequence[bytes], vocab_size: int) -> torch.Tensor:
    """Per-token preference used in closing mode, from each token's bytes (index = token id).

    A lone quote comes first (inside a string it is the only way out; outside one it opens the key
    or value the grammar demands), then brackets and braces, then ``,``, then the shortest tokens
    (which end numbers and literals soonest).
    """
    bias = np.full(vocab_size, -1.0e4, dtype=np.float32)
    for token_id, data in enumerate(tokens[:vocab_size]):
        stripped = data.decode("utf-8", errors="replace").strip()
        if stripped.startswith('"') and set(stripped) <= _CLOSERS:
            # Shortest first: where a string opens, '"}' would put a brace inside it.
            bias[token_id] = 2.0e3 - 10.0 * len(stripped)
        elif stripped and set(stripped) <= _CLOSERS:
            bias[token_id] = 1.0e3 + 10.0 * len(stripped)
        elif stripped == ",":
            bias[token_id] = 5.0e2
        elif stripped:
            bias[token_id] = -10.0 * len(stripped)
    return torch.from_numpy(bias)


class CompiledGrammar:
    """One schema compiled against one tokenizer: a matcher at the start, copied per row."""

    def __init__(self, start: llguidance.LLMatcher) -> None:
        """Keep ``start`` untouched; :meth:`matcher` hands out copies."""
        self._start = start
        self._lock = threading.Lock()

    def matcher(self) -> llguidance.LLMatcher:
        """A fresh matcher for one row (a copy: the grammar is not compiled again)."""
        with self._lock:
            return self._start.deep_copy()


def _require_fast(tokenizer: Any) -> None:
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise GrammarError(
            f"constrained decoding needs a fast (Rust) tokenizer, got {type(tokenizer).__name__}; "
            "load the checkpoint with its tokenizer.json (AutoTokenizer with use_fast=True)."
        )


def llg_tokenizer(
    tokenizer: Any,
    vocab_size: int,
    stop_token_ids: Sequence[int],
    plain: PlainTokenizer | None = None,
) -> tuple[llguidance.LLTokenizer, TokenTable]:
    """llguidance's view of ``tokenizer`` over its model's ``vocab_size`` ids, and the bytes of
    every token; from the token table in the user cache when there is one (see
    :mod:`medgraph.agents.token_table`), else from the tokenizer's JSON, storing the table.

    ``plain``: ``PlainTokenizer.of(tokenizer)`` if the caller has it already.
    """
    _require_fast(tokenizer)
    plain = plain if plain is not None else PlainTokenizer.of(tokenizer)
    n_vocab = max(vocab_size, len(tokenizer))
    stops = list(stop_token_ids)
    path = table_path(plain.fingerprint, n_vocab)
    table = read_table(path, n_vocab)
    if table is not None:
        vocabulary = CachedVocabulary(tokenizer, table, stops[0])
        wrapper = llguidance.TokenizerWrapper(vocabulary)
        return llguidance.LLTokenizer(wrapper, n_vocab=n_vocab, eos_token=stops), table
    built = llguidance.LLTokenizer(plain.spec, n_vocab=n_vocab, eos_token=stops)
    table = table_from(built, n_vocab)
    try:
        write_table(path, table)
    except OSError as error:  # a read-only home: every process builds it, nothing breaks
        logger.warning("cannot store the token table at %s (%s)", path, error)
    return built, table


class GrammarCompiler:
    """Compiles JSON schemas against one tokenizer, caching compiled grammars by schema."""

    def __init__(
        self,
        tokenizer: Any,
        vocab_size: int,
        stop_token_ids: Sequence[int],
        plain: PlainTokenizer | None = None,
    ) -> None:
        """Build llguidance's view of ``tokenizer`` and the closing-mode table over ``vocab_size``
        tokens (the model's output width); ``plain`` as in :func:`llg_tokenizer`."""
        if not stop_token_ids:
            raise GrammarError(
                "constrained decoding needs at least one stop token id to end a reply; the "
                "tokenizer has no eos_token_id or <end_of_turn>: set tokenizer.eos_token."
            )
        self.tokenizer, table = llg_tokenizer(tokenizer, vocab_size, stop_token_ids, plain)
        self.vocab_size = vocab_size
        self.stop_token_ids = tuple(stop_token_ids)
        self._cache: dict[str, CompiledGrammar] = {}
        self._lock = threading.Lock()
        self.bias = closing_bias(table.tokens, vocab_size)

    def compile(self, schema: Mapping[str, Any]) -> CompiledGrammar:
        """The compiled grammar for ``schema`` (compact JSON, no free whitespace)."""
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            compiled = self._cache.get(key)
            if compiled is None:
                # Compile the schema as given: the grammar keeps its property order.
                start = llguidance.LLMatcher(self.tokenizer, json_grammar(schema), log_level=0)
                if start.is_error():
                    raise GrammarError(
                        f"cannot compile the JSON schema {json.dumps(schema)[:300]} for "
                        f"constrained decoding: {start.get_error()[:300]}; fix the schema (a "
                        "JSON Schema object whose $ref targets exist under $defs)."
                    )
                compiled = self._cache[key] = CompiledGrammar(start)
        return compiled

    def processor(
        self, schemas: Sequence[Mapping[str, Any] | None], budgets: Sequence[int]
    ) -> GrammarLogitsProcessor:
        """A fresh logits processor for one ``generate`` call: a schema and token budget per row."""
        grammars = [self.compile(s) if s is not None else None for s in schemas]
        return GrammarLogitsProcessor(
            grammars, self.tokenizer.vocab_size, budgets, self.bias, self.stop_token_ids
        )


_SHARED: dict[tuple[int, tuple[int, ...], str], GrammarCompiler] = {}
_SHARED_LOCK = threading.Lock()


def shared_compiler(
    tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]
) -> GrammarCompiler:
    """The process's compiler for this vocabulary: models loaded twice with the same tokenizer
    (a folder and its GGUF file, two dtypes) share one setup over the vocabulary."""
    if getattr(tokenizer, "backend_tokenizer", None) is None:  # GrammarCompiler says what to do
        return GrammarCompiler(tokenizer, vocab_size, stop_token_ids)
    plain = PlainTokenizer.of(tokenizer)
    key = (vocab_size, tuple(stop_token_ids), plain.fingerprint)
    with _SHARED_LOCK:
        compiler = _SHARED.get(key)
        if compiler is None:
            compiler = _SHARED[key] = GrammarCompiler(tokenizer, vocab_size, stop_token_ids, plain)
        return compiler


class GrammarLogitsProcessor(LogitsProcessor):
    """Masks each row's logits to its grammar; rows without a grammar pass through unchanged."""

    def __init__(
        self,
        grammars: Sequence[CompiledGrammar | None],
        vocab_size: int,
        budgets: Sequence[int],
        bias: torch.Tensor,
        stop_token_ids: Sequence[int],
        reserve: int | None = None,
    ) -> None:
        """One matcher per row; each row's closing mode starts ``reserve`` tokens before its budget
        ends (default: half the budget, at most 64 tokens)."""
        self.matchers = [g.matcher() if g is not None else None for g in grammars]
        # A row ends when it emits a stop token; until then a finished grammar allows only those.
        self.ended = [m is None for m in self.matchers]
        self.stop_token_ids = frozenset(stop_token_ids)
        self._stops = torch.tensor(sorted(self.stop_token_ids), dtype=torch.long)
        self.bitmask = llguidance.numpy.allocate_token_bitmask(len(grammars), vocab_size)
        self._shifts = torch.arange(32, dtype=torch.int32)
        self.vocab_size = vocab_size
        self.closing_from = [
            b - (reserve if reserve is not None else min(64, b // 2)) for b in budgets
        ]
        self.bias = bias
        self._device_bias: dict[torch.device, torch.Tensor] = {}
        self.steps = 0
        # What _prepare worked out for the step it was run at: live rows and their allowed tokens.
        self._prepared_step = -1
        self._live: list[int] = []
        self._mask: torch.Tensor | None = None

    def _advance(self, last_tokens: torch.Tensor) -> None:
        """Feed every live row's last token (``last_tokens``, one per row) to its matcher."""
        tokens = last_tokens.tolist()
        for row, matcher in enumerate(self.matchers):
            if matcher is None or self.ended[row]:
                continue
            token = int(tokens[row])
            if token in self.stop_token_ids:
                self.ended[row] = True
            elif not matcher.consume_token(token):
                # Only a grammar beyond llguidance's limits gets here: the row is told to stop,
                # and its unfinished reply goes to the validator (repair round, then invalid).
                logger.warning("grammar matcher failed at row %d: %s", row, matcher.get_error())

    def width(self, logits_width: int) -> int:
        """How many of ``logits_width`` token scores the grammar speaks for."""
        return min(logits_width, self.vocab_size, self.bias.shape[0])

    def observe(self, new_tokens: torch.Tensor, width: int) -> None:
        """Take the tokens the model is about to read (``batch x new``) before its forward pass:
        advance the matchers and work out what each row allows next, so that the output layer
        can compute only those scores (see :mod:`medgraph.agents.engines.grammar_output`)."""
        self._prepare(new_tokens, width)

    def _prepare(self, tokens: torch.Tensor, width: int) -> None:
        """Advance by the last column of ``tokens`` (after the first step) and list what the live
        rows allow next."""
        if self.steps > 0:
            self._advance(tokens[:, -1])
        self._live = [i for i, ended in enumerate(self.ended) if not ended]
        self._mask = self._allowed(self._live, width) if self._live else None
        self._prepared_step = self.steps

    def _closing(self, row: int, step: int) -> bool:
        """Whether ``row`` is in closing mode at ``step`` (counted from 1)."""
        return step > self.closing_from[row]

    def needed_scores(self, most: int) -> list[torch.Tensor | None] | None:
        """Per row, the token ids whose scores the next step reads (``None``: all of them), or
        ``None`` if :meth:`observe` has not prepared this step.

        A row without a grammar reads every score; a row in closing mode or one that has ended
        reads none; a live row reads the tokens its grammar allows, or all of them when it allows
        more than ``most``.
        """
        if self._prepared_step != self.steps:
            return None
        positions = {row: index for index, row in enumerate(self._live)}
        none = torch.empty(0, dtype=torch.long)
        needed: list[torch.Tensor | None] = []
        for row, matcher in enumerate(self.matchers):
            index = positions.get(row)
            if matcher is None:
                needed.append(None)
            elif index is None or self._closing(row, self.steps + 1):
                needed.append(none)
            else:
                assert self._mask is not None
                ids = self._mask[index].nonzero().squeeze(1)
                needed.append(None if ids.numel() > most else ids)
        return needed

    def _allowed(self, rows: Sequence[int], width: int) -> torch.Tensor:
        """Boolean mask (rows x width) of the tokens each row's grammar allows next."""
        for row in rows:
            matcher = self.matchers[row]
            assert matcher is not None
            if matcher.is_error():
                self.bitmask[row] = 0
            else:
                llguidance.numpy.fill_next_token_bitmask(matcher, self.bitmask, row)
        words = torch.from_numpy(self.bitmask[np.asarray(rows)])
        bits = (words.unsqueeze(-1) >> self._shifts) & 1
        allowed = bits.reshape(len(rows), -1)[:, :width].bool()
        stops = self._stops[self._stops < width]
        for index, row in enumerate(rows):
            matcher = self.matchers[row]
            assert matcher is not None
            if matcher.is_error() or not bool(allowed[index].any()):
                allowed[index, stops] = True
        return allowed

    def _bias_on(self, device: torch.device, width: int) -> torch.Tensor:
        if device not in self._device_bias:
            self._device_bias[device] = self.bias.to(device)
        return self._device_bias[device][:width]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Accept the previous token in every matcher, then mask the next-token scores."""
        width = self.width(scores.shape[-1])
        if self._prepared_step != self.steps:
            self._prepare(input_ids, width)
        self.steps += 1
        rows = self._live
        if not rows:
            return scores
        assert self._mask is not None
        device = scores.device
        work = scores.float().cpu() if device.type not in ("cpu", "cuda") else scores.float()
        allowed = self._mask.to(work.device)
        index = torch.tensor(rows, device=work.device)
        view = work[index, :width].masked_fill(~allowed, float("-inf"))
        closing = [i for i, row in enumerate(rows) if self._closing(row, self.steps)]
        if closing:
            bias = self._bias_on(work.device, width).expand(len(closing), -1)
            view[closing] = torch.where(allowed[closing], bias, float("-inf"))
        work[index, :width] = view
        if work.shape[-1] > width:
            work[index, width:] = float("-inf")
        return work.to(device=device, dtype=scores.dtype)  # type: ignore[return-value]
