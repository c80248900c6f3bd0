"""Check what the decision grammar accepts, byte by byte, without loading a model's tokenizer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import llguidance

from medgraph.agents.grammar import json_grammar

_EOS = 256


class _ByteTokenizer:
    """One token per byte, plus an end token: every text has exactly one tokenization."""

    eos_token_id = _EOS
    bos_token_id = None

    def __init__(self) -> None:
        self.tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]
        self.special_token_ids = [_EOS]

    def __call__(self, text: str | bytes) -> list[int]:
        return list(text if isinstance(text, bytes) else text.encode("utf-8"))


_TOKENIZER = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteTokenizer()))


def accepts(schema: Mapping[str, Any], text: str) -> bool:
    """Whether the grammar compiled from ``schema`` accepts exactly ``text``."""
    matcher = llguidance.LLMatcher(_TOKENIZER, json_grammar(schema), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return matcher.consume_tokens(list(text.encode("utf-8"))) and matcher.is_accepting()
