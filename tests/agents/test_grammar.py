"""Constrained decoding: llguidance masks and closing mode on a random-weight model."""

from __future__ import annotations

import json

import jsonschema
import pytest
from langchain_core.messages import HumanMessage

from medgraph.agents.conversation import to_conversation
from medgraph.agents.engines.base import GenerationRequest
from medgraph.agents.engines.transformers_engine import TransformersEngine, load_model
from medgraph.agents.grammar import GrammarLogitsProcessor
from medgraph.agents.protocol import ToolSpec, decision_schema

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
