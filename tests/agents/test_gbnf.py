"""The GBNF writer: the language its grammar allows, checked through the same expression rendered
as a Python regular expression, against the schema's own ranges computed here."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import jsonschema
import pytest

from medgraph.agents.gbnf import NUMBER_DECIMALS, GBNFError, schema_gbnf, schema_regex
from medgraph.agents.protocol import bounded_schema, decision_schema, tool_specs
from tests.agents.decision_checks import TOOLS


@pytest.mark.parametrize(
    ("low", "high"),
    [(1, 50), (0, 0), (-5, 5), (-1200, -3), (7, 1234), (100, 199), (10, 99), (0, 1000), (-9, -9)],
)
def test_integer_ranges_allow_exactly_the_integers_between_their_bounds(
    low: int, high: int
) -> None:
    language = schema_regex({"type": "integer", "minimum": low, "maximum": high})
    for value in range(-1500, 1500):
        assert bool(language.fullmatch(str(value))) == (low <= value <= high), value
    for written in ("007", "-0", "+5", "5.0", "1e1", " 5"):
        assert not language.fullmatch(written), written


def _random_number(rng: random.Random, units: list[int]) -> str:
    decimals = rng.randint(0, NUMBER_DECIMALS + 1)
    fraction = "".join(rng.choice("0123456789") for _ in range(decimals))
    sign = "-" if rng.random() < 0.2 else ""
    return sign + str(rng.choice(units)) + ("." + fraction if decimals else "")


@pytest.mark.parametrize(
    ("low", "high"),
    [(0.5, 650), (30, 280), (-2.25, 3.125), (-7.5, -0.000125), (0, 0.75), (12.3456785, 12.35)],
)
def test_number_ranges_allow_exactly_the_short_decimals_between_their_bounds(
    low: float, high: float
) -> None:
    language = schema_regex({"type": "number", "minimum": low, "maximum": high})
    lowest, highest = Decimal(str(low)), Decimal(str(high))
    rng = random.Random(f"{low}-{high}")
    near = {int(v) + d for v in (low, high) for d in (-1, 0, 1)}
    units = sorted({abs(u) for u in near} | {rng.randint(0, 700) for _ in range(20)})
    for _ in range(6000):
        written = _random_number(rng, units)
        decimals = len(written.partition(".")[2])
        inside = lowest <= Decimal(written) <= highest and decimals <= NUMBER_DECIMALS
        if written.startswith("-0") and Decimal(written) == 0:
            inside = False  # "-0" and "-0.000" are not written
        assert bool(language.fullmatch(written)) == inside, written


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def test_decision_grammar_accepts_what_the_bounded_schema_validates() -> None:
    schema = bounded_schema(decision_schema(tool_specs(TOOLS), "auto", max_calls=2))
    language = schema_regex(schema)
    search = {"query": "aspirin in primary prevention", "k": 5}
    bmi = {"weight_kg": 82.5, "height_cm": 178}
    candidates: list[Any] = [
        {"answer": "Hello."},
        {"answer": "x" * 300},
        {"tool_calls": [{"name": "search_literature", "arguments": search}]},
        {"tool_calls": [{"name": "bmi", "arguments": bmi}] * 2},
        {"tool_calls": [{"name": "bmi", "arguments": bmi}] * 3},
        {"tool_calls": []},
        {"tool_calls": [{"name": "bmi", "arguments": {"weight_kg": 82.5}}]},
        {"tool_calls": [{"name": "search_literature", "arguments": {"query": "ab"}}]},
        {"tool_calls": [{"name": "search_literature", "arguments": {"query": "q" * 600}}]},
    ]
    for k in (0, 1, 50, 51):
        candidates.append(
            {"tool_calls": [{"name": "search_literature", "arguments": {**search, "k": k}}]}
        )
    for year in (1799, 1800, 2100, 2101, None):
        arguments = {"query": "statins", "year_from": year}
        candidates.append({"tool_calls": [{"name": "search_literature", "arguments": arguments}]})
    for weight in (0.4, 0.5, 650, 650.5, 70.123456):
        arguments = {"weight_kg": weight, "height_cm": 170}
        candidates.append({"tool_calls": [{"name": "bmi", "arguments": arguments}]})
    outcomes = []
    for candidate in candidates:
        text = _compact(candidate)
        valid = jsonschema.Draft202012Validator(schema).is_valid(candidate)
        assert bool(language.fullmatch(text)) == valid, text
        outcomes.append(valid)
    assert any(outcomes) and not all(outcomes)
    # Narrower than the schema in two ways, as the local grammar: members come in their declared
    # order, and objects take no undeclared keys.
    swapped = {"tool_calls": [{"arguments": bmi, "name": "bmi"}]}
    extra = {"tool_calls": [{"name": "bmi", "arguments": {**bmi, "sex": "f"}}]}
    for narrowed in (swapped, extra):
        assert jsonschema.Draft202012Validator(schema).is_valid(narrowed)
        assert not language.fullmatch(_compact(narrowed))


def test_grammar_text_names_one_rule_per_line_and_grows_linearly_with_optional_members() -> None:
    properties = {f"p{i}": {"type": "integer", "minimum": 0, "maximum": 9} for i in range(24)}
    grammar = schema_gbnf({"type": "object", "properties": properties})
    rules = [line.split(" ::= ")[0] for line in grammar.splitlines()]
    assert rules[0] == "root" and len(rules) == len(set(rules))
    assert len(grammar) < 24 * 200
    language = schema_regex({"type": "object", "properties": dict(list(properties.items())[:6])})
    assert language.fullmatch("{}") and language.fullmatch('{"p1":3,"p4":0}')
    assert not language.fullmatch('{"p4":0,"p1":3}') and not language.fullmatch('{,"p1":3}')


def test_definitions_become_rules_and_a_recursive_schema_has_no_regex() -> None:
    schema = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string", "maxLength": 8},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}, "maxItems": 2},
                },
                "required": ["label"],
            }
        },
        "$ref": "#/$defs/Node",
    }
    grammar = schema_gbnf(schema)
    assert "def-node ::= " in grammar and grammar.startswith("root ::= def-node")
    with pytest.raises(GBNFError, match="recursive"):
        schema_regex(schema)


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "string", "pattern": "^[A-Z]+$"}, "pattern"),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, "close it"),
        ({"allOf": [{"type": "integer"}, {"minimum": 3}]}, "allOf"),
        ({"type": "array"}, "items"),
        ({"description": "anything"}, "no type"),
        ({"$ref": "#/$defs/Missing"}, "not under \\$defs"),
        ({"type": "integer", "minimum": 5, "maximum": 4}, "above maximum"),
    ],
)
def test_schemas_it_cannot_express_raise_naming_the_problem(
    schema: dict[str, Any], named: str
) -> None:
    with pytest.raises(GBNFError, match=named):
        schema_gbnf(schema)
