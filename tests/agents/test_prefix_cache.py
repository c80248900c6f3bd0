"""Prefix reuse in the transformers engine: the same greedy decisions, less prefill."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from medgraph.agents.conversation import to_conversation
from medgraph.agents.engines import prefix_cache
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
    hits = reused.loaded.prefixes.hits
    assert [c.text for c in reused.generate(_requests())] == expected
    # The first row prefills in full; the others start from the rows before them.
    assert reused.loaded.prefixes.misses == before + 1
    assert reused.loaded.prefixes.hits == hits + 3
    # A later batch (and a single request) with the same tool list starts from a stored prompt.
    assert [c.text for c in reused.generate(_requests()[1:3])] == expected[1:3]
    assert [c.text for c in reused.generate(_requests()[:1])] == expected[:1]
    assert reused.loaded.prefixes.hits == hits + 6
    assert reused.loaded.prefixes.misses == before + 1


def _turns() -> list[GenerationRequest]:
    """A tool step, the next step of the same conversation, and a prompt that parts from both
    after the tool list (past the tiny checkpoints' sliding window of 128 tokens)."""
    schema = decision_schema(SPECS, "auto")
    suffix = render_tools_prompt(SPECS, "auto")
    first = [HumanMessage(QUESTIONS[1])]
    second = [
        *first,
        AIMessage('{"tool_calls": [{"name": "search_literature", "arguments": {"query": "x"}}]}'),
        HumanMessage("Tool result: no passages found. " * 8),
    ]
    other = [HumanMessage(QUESTIONS[2])]
    return [
        GenerationRequest(to_conversation(m, system_suffix=suffix), 32, json_schema=schema)
        for m in (first, second, other)
    ] + [GenerationRequest(to_conversation(second, system_suffix=suffix), 24)]


def test_a_later_turn_prefills_only_what_no_stored_prompt_starts_with(tiny_text: str) -> None:
    plain = TransformersEngine(tiny_text, reuse_prefix=False)
    reused = TransformersEngine(tiny_text, reuse_prefix=True)
    prefixes = reused.loaded.prefixes
    prefixes.clear()
    requests = _turns()
    expected = [plain.generate([r])[0].text for r in requests]
    lengths = [plain.generate([r])[0].prompt_tokens for r in requests]
    assert lengths[0] > 128  # the sliding layers have dropped positions the reuse needs
    reused_before = prefixes.reused_tokens
    got = []
    for request in requests:  # one at a time, as the reasoner, writer and judge call it
        got.append(reused.generate([request])[0].text)
    assert got == expected
    tokens = [
        reused.loaded.tokenizer(reused._prompt(r.conversation), add_special_tokens=False)[
            "input_ids"
        ]
        for r in requests
    ]
    assert tokens[1][: lengths[0]] == tokens[0]  # the next step extends the first one's prompt
    parted = common_prefix_length([tokens[1], tokens[2]])
    assert 128 < parted < lengths[0] - 1
    assert tokens[3] == tokens[1]
    # What each prompt took from a stored one (the last token of a prompt is generate's own).
    shared = [lengths[0] - 1, parted, lengths[3] - 1]
    assert prefixes.reused_tokens - reused_before == sum(shared)


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


def _with_deadline(requests: list[GenerationRequest], deadline: float) -> list[GenerationRequest]:
    return [dataclasses.replace(r, deadline=deadline) for r in requests]


def test_prefill_in_chunks_under_a_deadline_gives_the_same_greedy_decisions(
    tiny_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of 32 tokens: several per prompt, and more than the sliding window (128) in all.
    monkeypatch.setattr(prefix_cache.prefill_within, "__defaults__", (32,))
    engine = TransformersEngine(tiny_text, reuse_prefix=False)
    for request in _requests()[1:3]:  # one row at a time: no shared prefix, chunked prefill
        expected = engine.generate([request])[0].text
        timed = engine.generate(_with_deadline([request], time.time() + 600))[0]
        assert timed.text == expected


def test_a_passed_deadline_ends_prefill_between_chunks_with_an_empty_reply(
    tiny_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = TransformersEngine(tiny_text, reuse_prefix=False)
    chunks: list[int] = []
    prefill = prefix_cache._forward

    def slow_prefill(model: Any, tokens: list[int], cache: Any) -> Any:
        chunks.append(len(tokens))
        time.sleep(0.3)
        return prefill(model, tokens, cache)

    monkeypatch.setattr(prefix_cache, "_forward", slow_prefill)
    monkeypatch.setattr(prefix_cache.prefill_within, "__defaults__", (16,))
    request = _requests()[3]  # 300 "x": many 16-token chunks
    reply = engine.generate(_with_deadline([request], time.time() + 0.5))[0]
    assert reply.text == "" and reply.completion_tokens == 0 and reply.prompt_tokens > 100
    assert 1 <= len(chunks) <= 3  # stopped soon after the deadline, not after the whole prompt
    assert engine.generate(_with_deadline([request], time.time() - 1))[0].text == ""
