"""Prefix reuse in the transformers engine: the same greedy decisions, less prefill."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool

from medgraph.agents.conversation import to_conversation
from medgraph.agents.engines.base import GenerationRequest
from medgraph.agents.engines.prefix_cache import common_prefix_length
from medgraph.agents.engines.transformers_engine import TransformersEngine
from medgraph.agents.protocol import decision_schema, render_tools_prompt, tool_specs


@tool
def search_literature(query: str, k: int = 5) -> str:
    """Search the indexed medical literature for passages about ``query``."""
    return query


@tool
def body_mass_index(weight_kg: float, height_m: float) -> float:
    """Body mass index in kg/m2 from weight and height."""
    return weight_kg / height_m**2


SPECS = tool_specs([search_literature, body_mass_index])
QUESTIONS = [
    "hello",
    "Statins after an ischaemic stroke in adults over eighty: what does the evidence say?",
    "BMI for 82 kg and 1.78 m",
    "x" * 300,
]


def _requests(choice: str = "any") -> list[GenerationRequest]:
    schema = decision_schema(SPECS, choice)
    suffix = render_tools_prompt(SPECS, choice)
    return [
        GenerationRequest(
            to_conversation([HumanMessage(q)], system_suffix=suffix), 48, json_schema=schema
        )
        for q in QUESTIONS
    ]


def test_common_prefix_length() -> None:
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5], [6]]) == 0
    assert common_prefix_length([[1, 2]]) == 2


@pytest.mark.parametrize("checkpoint", ["tiny_multimodal", "tiny_text"])
def test_reused_prefix_gives_the_same_greedy_decisions(
    checkpoint: str, request: pytest.FixtureRequest
) -> None:
    # The tiny checkpoints' sliding window (128) is shorter than the tool prompt, so the stacked
    # cache's sliding layers are exercised too.
    model: str = request.getfixturevalue(checkpoint)
    plain = TransformersEngine(model, reuse_prefix=False)
    reused = TransformersEngine(model, reuse_prefix=True)
    assert reused.loaded is plain.loaded
    # The loaded model is shared with earlier tests, which may have stored this tool list's prefix.
    reused.loaded.prefixes.clear()
    expected = [c.text for c in plain.generate(_requests())]
    before = reused.loaded.prefixes.misses
    assert [c.text for c in reused.generate(_requests())] == expected
    assert reused.loaded.prefixes.misses == before + 1
    # A later batch (and a single request) with the same tool list starts from the stored prefix.
    hits = reused.loaded.prefixes.hits
    assert [c.text for c in reused.generate(_requests()[1:3])] == expected[1:3]
    assert [c.text for c in reused.generate(_requests()[:1])] == expected[:1]
    assert reused.loaded.prefixes.hits == hits + 2


def test_prefill_is_shared(tiny_text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = TransformersEngine(tiny_text, reuse_prefix=True)
    engine.loaded.prefixes.clear()
    prefilled: list[int] = []
    forward = engine.loaded.model.forward

    def counting_forward(*args: Any, **kwargs: Any) -> Any:
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            prefilled.append(ids.shape[0] * ids.shape[1])
        return forward(*args, **kwargs)

    monkeypatch.setattr(engine.loaded.model, "forward", counting_forward)
    requests = _requests()
    engine.generate(requests)
    prompts = [engine._prompt(r.conversation) for r in requests]
    tokenizer = engine.loaded.tokenizer
    padded = len(prompts) * max(len(tokenizer(p)["input_ids"]) for p in prompts)
    assert sum(prefilled) < padded / 2
