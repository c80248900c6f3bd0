"""Constrained decoding: llguidance masks and closing mode on a random-weight model."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import llguidance.numpy
import numpy as np
import pytest
import torch
from langchain_core.messages import HumanMessage
from transformers import AutoTokenizer

from medgraph.agents.conversation import to_conversation
from medgraph.agents.engines.base import GenerationRequest
from medgraph.agents.engines.transformers_engine import TransformersEngine, load_model
from medgraph.agents.grammar import (
    GrammarCompiler,
    GrammarError,
    GrammarLogitsProcessor,
    grammar_schema,
)
from medgraph.agents.protocol import DEFAULT_STRING_MAX_CHARS, ToolSpec, decision_schema, tool_specs
from medgraph.agents.token_table import read_table
from tests.agents.byte_grammar import accepts
from tests.agents.test_bounded_decisions import RANGED, body_mass_index, search_literature

SEARCH = ToolSpec(
    name="search",
    description="Search the literature.",
    parameters={
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
)
SCHEMA = decision_schema([SEARCH], "any")
assert SCHEMA is not None
PROMPTS = [f"Question {i}: what is known about drug {i * 13}?" for i in range(8)]


def _requests(budget: int) -> list[GenerationRequest]:
    return [
        GenerationRequest(to_conversation([HumanMessage(p)]), budget, json_schema=SCHEMA)
        for p in PROMPTS
    ]


def _valid(text: str) -> bool:
    try:
        jsonschema.validate(json.loads(text, strict=False), SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


@pytest.fixture(scope="module")
def engine(tiny_multimodal: str) -> TransformersEngine:
    return TransformersEngine(tiny_multimodal)


def test_every_constrained_reply_is_schema_valid(engine: TransformersEngine) -> None:
    assert all(_valid(c.text) for c in engine.generate(_requests(48)))


def test_closing_mode_is_what_ends_runaway_strings(
    engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without closing mode, random weights loop inside the query string until the budget ends.
    original = GrammarLogitsProcessor.__init__

    def without_closing(self: GrammarLogitsProcessor, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self.closing_from = [10**9] * len(self.closing_from)

    monkeypatch.setattr(GrammarLogitsProcessor, "__init__", without_closing)
    unclosed = [c.text for c in engine.generate(_requests(48))]
    assert sum(not _valid(t) for t in unclosed) >= len(PROMPTS) // 2


def test_rows_with_and_without_schema_share_a_batch(engine: TransformersEngine) -> None:
    free = GenerationRequest(to_conversation([HumanMessage("hello")]), 12)
    constrained, unconstrained = engine.generate([_requests(48)[0], free])
    assert _valid(constrained.text)
    assert unconstrained.text == engine.generate([free])[0].text


def test_models_with_one_vocabulary_share_one_grammar_setup(tiny_text: str) -> None:
    # Two loaded copies (different dtype settings) of one checkpoint: the setup over the
    # vocabulary (llguidance's tokenizer, the closing table) is done once.
    first, second = load_model(tiny_text, dtype="auto"), load_model(tiny_text, dtype="float32")
    assert first is not second
    # A tokenizer that has padded a batch carries padding settings; its vocabulary is the same.
    first.tokenizer(["a", "a longer text"], padding=True)
    assert first.grammar is second.grammar


# The bounds the grammar itself enforces (checked byte by byte, no model needed).

BOUNDED_SCHEMA = decision_schema(tool_specs([search_literature, body_mass_index]), "any")
assert BOUNDED_SCHEMA is not None


def _call(name: str, arguments: str) -> str:
    return f'{{"tool_calls": [{{"name": "{name}", "arguments": {arguments}}}]}}'


def test_grammar_numbers_have_at_most_six_decimals_and_no_exponent() -> None:
    bmi = "body_mass_index"
    assert accepts(BOUNDED_SCHEMA, _call(bmi, '{"weight_kg": 81.123456, "height_m": 1.8}'))
    assert not accepts(BOUNDED_SCHEMA, _call(bmi, '{"weight_kg": 81.1234567, "height_m": 1.8}'))
    assert not accepts(BOUNDED_SCHEMA, _call(bmi, '{"weight_kg": 8e1, "height_m": 1.8}'))
    # Nine integer digits at most (the range bounded_schema declares), so 15 significant in all.
    assert not accepts(BOUNDED_SCHEMA, _call(bmi, '{"weight_kg": 1000000000, "height_m": 1.8}'))
    declared = {"type": "number", "multipleOf": 0.5}
    assert grammar_schema(declared) == declared


def test_grammar_keeps_ranges_string_caps_and_the_call_limit() -> None:
    dose = decision_schema([RANGED], "dose")
    assert dose is not None
    assert accepts(dose, _call("dose", '{"age_years": 120, "mg": 0.5}'))
    assert not accepts(dose, _call("dose", '{"age_years": 121, "mg": 0.5}'))
    assert not accepts(dose, _call("dose", '{"age_years": 17, "mg": 0.5}'))
    assert not accepts(dose, _call("dose", '{"age_years": 40, "mg": 650.5}'))
    search = "search_literature"
    at_cap = json.dumps({"query": "x" * DEFAULT_STRING_MAX_CHARS})
    over_cap = json.dumps({"query": "x" * (DEFAULT_STRING_MAX_CHARS + 1)})
    assert accepts(BOUNDED_SCHEMA, _call(search, at_cap))
    assert not accepts(BOUNDED_SCHEMA, _call(search, over_cap))
    call = {"name": search, "arguments": {"query": "statins"}}
    assert accepts(BOUNDED_SCHEMA, json.dumps({"tool_calls": [call] * 4}))
    assert not accepts(BOUNDED_SCHEMA, json.dumps({"tool_calls": [call] * 5}))


def test_grammar_closes_objects_to_undeclared_keys() -> None:
    # The tool's own schema leaves additionalProperties unset; an extra key could hold anything.
    extra = '{"query": "statins", "notes": "' + "y" * 1000 + '"}'
    assert not accepts(BOUNDED_SCHEMA, _call("search_literature", extra))
    # Branches of an allOf declare each other's keys: they stay open, their union is closed.
    both = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}},
            {"type": "object", "properties": {"b": {"type": "integer"}}},
        ]
    }
    assert accepts(both, '{"a": 1, "b": 2}')


def test_schema_the_grammar_cannot_compile_names_the_schema(tiny_text: str) -> None:
    broken = {"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}}
    with pytest.raises(GrammarError, match="Missing"):
        load_model(tiny_text).grammar.compile(broken)


def test_a_slow_tokenizer_is_refused_with_the_fix() -> None:
    with pytest.raises(GrammarError, match="use_fast=True"):
        GrammarCompiler(object(), 10, [1])


def test_closing_mode_closes_numbers_and_literals(engine: TransformersEngine) -> None:
    values = {
        "type": "object",
        "properties": {
            "values": {
                "type": "array",
                "items": {"anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "null"}]},
            }
        },
        "required": ["values"],
    }
    requests = [
        GenerationRequest(to_conversation([HumanMessage(p)]), 16, json_schema=values)
        for p in PROMPTS
    ]
    for completion in engine.generate(requests):
        jsonschema.validate(json.loads(completion.text), values)


# The token table in the user cache (grammar setup without rebuilding llguidance's tokenizer).

REPLY = '{"tool_calls": [{"name": "search", "arguments": {"query": "metformin dose"}}]}'


def _tiny_tokenizer(folder: str) -> tuple[object, list[int]]:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    stops = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    return tokenizer, stops


def _masks(compiler: GrammarCompiler, tokens: list[int]) -> list[bytes]:
    """The grammar's allowed-token mask before each token of ``tokens``."""
    matcher = compiler.compile(SCHEMA).matcher()
    mask = llguidance.numpy.allocate_token_bitmask(1, compiler.tokenizer.vocab_size)
    masks = []
    for token in tokens:
        llguidance.numpy.fill_next_token_bitmask(matcher, mask, 0)
        masks.append(mask.tobytes())
        assert matcher.consume_token(token)
    return masks


def test_a_stored_token_table_gives_the_setup_built_from_the_tokenizer(
    tiny_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDGRAPH_GRAMMAR_CACHE", str(tmp_path))
    tokenizer, stops = _tiny_tokenizer(tiny_text)
    vocab = len(tokenizer)
    built = GrammarCompiler(tokenizer, vocab, stops)
    (stored,) = tmp_path.glob("*.tokens")
    table = read_table(stored, vocab)
    assert table is not None
    # Every token's bytes are what the tokenizer decodes it to. Where that is a lone replacement
    # character (a byte of a longer UTF-8 sequence), llguidance keeps the byte; 0xFF, which it
    # uses to mark special tokens, it keeps as no bytes.
    decoded = tokenizer.batch_decode([[i] for i in range(vocab)])  # type: ignore[attr-defined]
    for data, text in zip(table.tokens, decoded, strict=True):
        assert data.decode("utf-8", errors="replace") == text or text == "\ufffd"
    assert sum(text != "\ufffd" for text in decoded) > vocab // 2

    def no_rebuild(*args: object) -> None:
        raise AssertionError("the stored table was not used")

    monkeypatch.setattr("medgraph.agents.grammar.table_from", no_rebuild)
    cached = GrammarCompiler(tokenizer, vocab, stops)
    assert torch.equal(built.bias, cached.bias)
    reply = tokenizer.encode(REPLY, add_special_tokens=False)  # type: ignore[attr-defined]
    assert _masks(cached, reply) == _masks(built, reply)
    assert cached.tokenizer.tokenize_str(REPLY) == built.tokenizer.tokenize_str(REPLY)


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "not a table"])
def test_a_damaged_token_table_is_rebuilt(
    damage: str, tiny_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDGRAPH_GRAMMAR_CACHE", str(tmp_path))
    tokenizer, stops = _tiny_tokenizer(tiny_text)
    vocab = len(tokenizer)
    first = GrammarCompiler(tokenizer, vocab, stops)
    (stored,) = tmp_path.glob("*.tokens")
    whole = stored.read_bytes()
    if damage == "truncated":
        stored.write_bytes(whole[: len(whole) // 2])
    elif damage == "flipped byte":
        middle = len(whole) // 2
        stored.write_bytes(whole[:middle] + bytes([whole[middle] ^ 0xFF]) + whole[middle + 1 :])
    else:
        stored.write_bytes(b"{}")
    assert read_table(stored, vocab) is None
    again = GrammarCompiler(tokenizer, vocab, stops)
    assert torch.equal(first.bias, again.bias)
    assert stored.read_bytes() == whole  # rebuilt and stored again
    assert np.array_equal(first.bias.numpy(), again.bias.numpy())
