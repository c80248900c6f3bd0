"""The tools and bound checks shared by the tiers that decide with real Gemma weights (the
transformers engine and the llama.cpp server through the ``openai`` engine)."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from medgraph.agents.protocol import MAX_NUMBER_DIGITS, tool_specs
from medgraph.tools.calculators import CALCULATOR_TOOLS
from medgraph.tools.literature import build_search_literature_tool

DECISION_TOKEN_LIMIT = 128


class _NoIndex:
    def search(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


SEARCH = build_search_literature_tool(_NoIndex(), max_k=50)  # type: ignore[arg-type]
BMI = next(tool for tool in CALCULATOR_TOOLS if tool.name == "bmi")
TOOLS = [SEARCH, BMI]
SCHEMAS = {spec.name: spec.parameters for spec in tool_specs(TOOLS)}


def _numbers(text: str) -> list[str]:
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    return re.findall(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", outside)


def _significant_digits(number: str) -> int:
    return len(re.split(r"[eE]", number)[0].lstrip("-").replace(".", "").lstrip("0"))


def assert_call_bounded(call: dict[str, Any]) -> None:
    """The call's arguments fit its tool's schema (types, declared ranges) and no number has more
    than :data:`MAX_NUMBER_DIGITS` significant digits."""
    jsonschema.validate(call["args"], SCHEMAS[call["name"]])
    digits = [_significant_digits(n) for n in _numbers(json.dumps(call["args"]))]
    assert all(d <= MAX_NUMBER_DIGITS for d in digits), call
