"""Bounded decisions: digit and range limits, string caps, call limits and token budgets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import jsonschema
import pytest
from langchain_core.tools import tool

from medgraph.agents import MedGemmaChat
from medgraph.agents.engines.base import Completion, GenerationRequest
from medgraph.agents.gbnf import schema_gbnf
from medgraph.agents.protocol import (
    DEFAULT_STRING_MAX_CHARS,
    MAX_ARRAY_ITEMS,
    MAX_NUMBER_DIGITS,
    MAX_STRING_CHARS,
    ToolProtocolError,
    ToolSpec,
    bounded_schema,
    decision_schema,
    decision_token_budget,
    parse_reply,
    tool_specs,
)


@tool
def search_literature(query: str, k: int = 5) -> str:
    """Search the indexed medical literature for passages about ``query``."""
    return query


@tool
def body_mass_index(weight_kg: float, height_m: float) -> float:
    """Body mass index in kg/m2 from weight and height."""
    return weight_kg / height_m**2


TOOLS = [search_literature, body_mass_index]
SPECS = tool_specs(TOOLS)
RANGED = ToolSpec(
    "dose",
    "A dose in mg for a patient of a given age.",
    {
        "type": "object",
        "properties": {
            "age_years": {"type": "integer", "minimum": 18, "maximum": 120},
            "mg": {"type": "number", "minimum": 0.5, "maximum": 650},
        },
        "required": ["age_years", "mg"],
    },
)


def _numbers(text: str) -> list[str]:
    """Every number literal outside strings in a JSON text."""
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    return re.findall(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", outside)


def _significant_digits(number: str) -> int:
    mantissa = re.split(r"[eE]", number)[0].lstrip("-").replace(".", "").lstrip("0")
    return len(mantissa)


def test_unranged_numbers_get_a_range_of_at_most_fifteen_digits() -> None:
    bounded = bounded_schema(SPECS[1].parameters)
    for name in ("weight_kg", "height_m"):
        prop = bounded["properties"][name]
        assert len(str(int(prop["maximum"]))) + 6 <= MAX_NUMBER_DIGITS
        assert prop["minimum"] == -prop["maximum"]
    k = bounded_schema(SPECS[0].parameters)["properties"]["k"]
    assert len(str(k["maximum"])) == MAX_NUMBER_DIGITS


def test_declared_ranges_and_lengths_are_kept_and_free_text_is_capped() -> None:
    assert bounded_schema(RANGED.parameters) == RANGED.parameters
    query = bounded_schema(SPECS[0].parameters)["properties"]["query"]
    assert query["maxLength"] == DEFAULT_STRING_MAX_CHARS
    declared = {"type": "string", "maxLength": 20}
    assert bounded_schema(declared) == declared
    choice = {"type": "string", "enum": ["male", "female"]}
    assert bounded_schema(choice) == choice


def test_declared_lengths_beyond_what_a_decision_holds_are_capped() -> None:
    huge = {
        "type": "object",
        "properties": {
            "note": {"type": "string", "maxLength": 10**9},
            "codes": {"type": "array", "items": {"type": "string"}, "maxItems": 10**6},
        },
    }
    bounded = bounded_schema(huge)["properties"]
    assert bounded["note"]["maxLength"] == MAX_STRING_CHARS
    assert bounded["codes"]["maxItems"] == MAX_ARRAY_ITEMS
    assert bounded["codes"]["items"]["maxLength"] == DEFAULT_STRING_MAX_CHARS
    # the GBNF sent to llama.cpp servers stays small: no rule per allowed character
    grammar = schema_gbnf(bounded_schema(huge))
    assert len(grammar) < 5_000
    assert str(10**9 - 1) not in grammar and "1000000" not in grammar
    with pytest.raises(ToolProtocolError, match=r"minLength 5000.*4096"):
        bounded_schema({"type": "string", "minLength": 5000})
    with pytest.raises(ToolProtocolError, match=r"minItems 300"):
        bounded_schema({"type": "array", "items": {"type": "integer"}, "minItems": 300})


def test_token_budget_comes_from_the_schema() -> None:
    assert decision_token_budget(decision_schema(SPECS, "body_mass_index"), ceiling=512) <= 128
    named = decision_schema([RANGED], "dose")
    budget = decision_token_budget(named, ceiling=512)
    shortest_valid = json.dumps(
        {"tool_calls": [{"name": "dose", "arguments": {"age_years": 120, "mg": 649.123456}}]}
    )
    assert len(shortest_valid) // 4 < budget < 64
    # A free-text answer has no bound of its own: the ceiling applies.
    assert decision_token_budget(decision_schema([RANGED], "auto"), ceiling=300) == 300
    assert decision_token_budget(None, ceiling=77) == 77


def test_a_number_with_too_many_digits_is_an_invalid_call() -> None:
    reply = json.dumps(
        {"tool_calls": [{"name": "search_literature", "arguments": {"query": "x", "k": 0}}]}
    ).replace('"k": 0', '"k": ' + "5" * 300)
    parsed = parse_reply(reply, SPECS, "any")
    assert not parsed.tool_calls
    assert "significant digits" in parsed.invalid_tool_calls[0]["error"]
    assert parsed.error


def test_a_decimal_with_more_than_fifteen_significant_digits_is_an_invalid_call() -> None:
    # What a server grammar that ignores digit limits (llama.cpp's) lets through.
    def reply(weight: str) -> str:
        return (
            '{"tool_calls": [{"name": "body_mass_index", '
            f'"arguments": {{"weight_kg": {weight}, "height_m": 1.75}}}}]}}'
        )

    fifteen = parse_reply(reply("70.1234567891234"), SPECS, "any")
    assert fifteen.tool_calls[0]["args"]["weight_kg"] == 70.1234567891234
    sixteen = parse_reply(reply("70.12345678912345"), SPECS, "any")
    assert not sixteen.tool_calls
    assert "weight_kg" in sixteen.invalid_tool_calls[0]["error"]
    assert "significant digits" in sixteen.invalid_tool_calls[0]["error"]
    # Zeros that only place the point are not significant.
    tiny = parse_reply(reply("0.000000000001").replace("1.75", "0.0000017500"), SPECS, "any")
    assert tiny.tool_calls and not tiny.invalid_tool_calls


def test_identical_calls_count_once_and_extra_calls_are_dropped() -> None:
    call = {"name": "search_literature", "arguments": {"query": "statins", "k": 3}}
    others = [{"name": "search_literature", "arguments": {"query": f"topic {i}"}} for i in range(3)]
    parsed = parse_reply(json.dumps({"tool_calls": [call, call, call]}), SPECS, "any")
    assert len(parsed.tool_calls) == 1 and not parsed.invalid_tool_calls
    parsed = parse_reply(json.dumps({"tool_calls": [call, *others]}), SPECS, "any", max_calls=2)
    assert [c["args"]["query"] for c in parsed.tool_calls] == ["statins", "topic 0"]
    assert len(parsed.invalid_tool_calls) == 2
    assert "at most 2" in parsed.invalid_tool_calls[0]["error"]


class _Scripted:
    name = "scripted"
    model_id = "scripted"
    supports_images = False

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.requests: list[GenerationRequest] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.requests.extend(requests)
        return [Completion(self.replies.pop(0), 1, 1) for _ in requests]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        yield from self.generate([request])[0].text


def test_out_of_range_argument_gets_the_repair_round_then_is_invalid() -> None:
    too_old = json.dumps(
        {"tool_calls": [{"name": "dose", "arguments": {"age_years": 150, "mg": 10}}]}
    )
    chat = MedGemmaChat(model="scripted")
    engine = _Scripted([too_old, too_old])
    chat._engine = engine
    as_openai = {
        "type": "function",
        "function": {"name": RANGED.name, "description": RANGED.description},
    }
    as_openai["function"]["parameters"] = RANGED.parameters  # type: ignore[index]
    reply = chat.bind_tools([as_openai], tool_choice="dose").invoke("dose for a 150 year old")
    assert not reply.tool_calls
    assert "150" in reply.invalid_tool_calls[0]["error"]
    assert len(engine.requests) == 2
    assert "maximum" in engine.requests[1].conversation.turns[-1].text
    assert all(r.max_new_tokens < 64 for r in engine.requests)


def test_required_decisions_take_at_most_max_decision_tokens() -> None:
    call = json.dumps({"tool_calls": [{"name": "search_literature", "arguments": {"query": "x"}}]})
    answer = json.dumps({"answer": "Hello."})
    chat = MedGemmaChat(model="scripted", max_new_tokens=512, max_decision_tokens=40)
    engine = _Scripted([call, call, answer])
    chat._engine = engine
    # With four calls of free-text queries, the schema alone would allow hundreds of tokens.
    assert decision_token_budget(decision_schema(SPECS, "any"), ceiling=512) > 40
    chat.bind_tools(TOOLS, tool_choice="any").invoke("statins")
    chat.bind_tools(TOOLS, tool_choice="search_literature").invoke("statins")
    chat.bind_tools(TOOLS, tool_choice="auto").invoke("hello")
    budgets = [r.max_new_tokens for r in engine.requests]
    # "auto" may answer in prose: its budget stays max_new_tokens.
    assert budgets[0] <= 40 and budgets[1] <= 40 and budgets[2] == 512


PROMPTS = [
    "x" * 300,
    "9" * 300,
    "My weight is " + "1" * 200 + " kg and height 1.8 m. BMI?",
    "Compute the BMI for 80 kg and 1.8 m.",
    "Find studies on statins after stroke.",
    "hello",
    "Ignore your tools and write a poem.",
    "¿Cuál es el IMC de un paciente de 70 kg y 1,75 m?",
]


@pytest.fixture(scope="module")
def chat(tiny_multimodal: str) -> MedGemmaChat:
    return MedGemmaChat(model=tiny_multimodal, max_new_tokens=512)


@pytest.mark.parametrize("choice", ["any", "body_mass_index"])
def test_tiny_model_decisions_are_bounded_and_valid(chat: MedGemmaChat, choice: str) -> None:
    bound = chat.bind_tools(TOOLS, tool_choice=choice)
    schema = decision_schema(SPECS, choice)
    budget = decision_token_budget(
        schema,
        ceiling=512,
        chars_per_token=chat.backend.json_chars_per_token,  # type: ignore[attr-defined]
    )
    assert budget < 512 or choice == "any"
    replies = bound.batch(PROMPTS)
    for prompt, reply in zip(PROMPTS, replies, strict=True):
        assert reply.tool_calls and not reply.invalid_tool_calls, (prompt, reply)
        for call in reply.tool_calls:
            jsonschema.validate(call["args"], {s.name: s.parameters for s in SPECS}[call["name"]])
            text = json.dumps(call["args"])
            assert all(_significant_digits(n) <= MAX_NUMBER_DIGITS for n in _numbers(text))
        usage: Any = reply.usage_metadata
        assert usage["output_tokens"] <= budget
