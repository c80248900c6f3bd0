"""The output layer that computes only the token scores a grammar lets through."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import jsonschema
import pytest
import torch
from langchain_core.messages import HumanMessage

import medgraph.agents.engines.grammar_output as grammar_output
import medgraph.agents.engines.transformers_engine as transformers_engine
from medgraph.agents.conversation import to_conversation
from medgraph.agents.engines.base import GenerationRequest
from medgraph.agents.engines.grammar_output import selected_scores
from medgraph.agents.engines.transformers_engine import TransformersEngine
from medgraph.agents.protocol import decision_schema, tool_specs
from tests.agents.test_bounded_decisions import body_mass_index, search_literature

SCHEMA = decision_schema(tool_specs([search_literature, body_mass_index]), "any")
assert SCHEMA is not None
PROMPTS = [f"Question {i}: what is known about drug {i * 13}?" for i in range(6)]


def _requests(budget: int) -> list[GenerationRequest]:
    constrained = [
        GenerationRequest(to_conversation([HumanMessage(p)]), budget, json_schema=SCHEMA)
        for p in PROMPTS
    ]
    return [*constrained, GenerationRequest(to_conversation([HumanMessage("hello")]), 12)]


def test_selected_scores_match_the_full_product_where_a_row_needs_them() -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 8, generator=generator)
    hidden = torch.randn(4, 1, 8, generator=generator)
    needed = [
        torch.tensor([3, 9]),
        None,
        torch.empty(0, dtype=torch.long),
        torch.tensor([9, 40]),
    ]
    scores = selected_scores(weight, hidden, needed)
    full = hidden @ weight.T
    assert scores.shape == full.shape
    torch.testing.assert_close(scores[1], full[1])
    for row in (0, 3):
        ids = needed[row]
        assert ids is not None
        torch.testing.assert_close(scores[row, 0, ids], full[row, 0, ids])
    # nothing outside the rows' tokens is computed, and a row that needs none gets zeros
    outside = torch.ones(64, dtype=torch.bool)
    outside[[3, 9, 40]] = False
    assert not scores[[0, 3]][:, 0][:, outside].any()
    assert not scores[2].any()


@pytest.fixture(scope="module")
def engine(tiny_text: str) -> TransformersEngine:
    return TransformersEngine(tiny_text)


def test_decoding_chooses_the_same_tokens_with_and_without_the_selective_layer(
    engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    computed: list[list[int]] = []  # per step, how many scores each row had computed
    vocabulary = engine.loaded.model.get_output_embeddings().out_features

    def counted(weight: torch.Tensor, hidden: torch.Tensor, needed: Any) -> torch.Tensor:
        computed.append([vocabulary if ids is None else int(ids.numel()) for ids in needed])
        return selected_scores(weight, hidden, needed)

    monkeypatch.setattr(grammar_output, "selected_scores", counted)
    selective = engine.generate(_requests(48))
    with monkeypatch.context() as plain:
        plain.setattr(
            transformers_engine, "grammar_output_layer", lambda *_: contextlib.nullcontext()
        )
        computed_before = len(computed)
        full = engine.generate(_requests(48))
        assert len(computed) == computed_before  # the plain run never used the layer
    assert [c.text for c in selective] == [c.text for c in full]
    for completion in selective[:-1]:
        jsonschema.validate(json.loads(completion.text), SCHEMA)
    # every step but the prompt's went through the layer; the unconstrained row needs every
    # score, and the constrained rows most often a few
    assert len(computed) >= max(c.completion_tokens for c in selective) - 1
    assert all(step[-1] == vocabulary for step in computed)
    constrained = [n for step in computed for n in step[:-1]]
    assert sum(n < vocabulary // 8 for n in constrained) > len(constrained) // 2


def test_sampled_decoding_with_rows_that_end_early_stays_valid(tiny_text: str) -> None:
    # Rows that have ended get finite scores: sampling over all -inf would fail.
    sampled = TransformersEngine(tiny_text, temperature=1.0)
    torch.manual_seed(0)
    completions = sampled.generate(_requests(48)[:-1])
    assert len({c.completion_tokens for c in completions}) > 1  # rows did end at different steps
    for completion in completions:
        jsonschema.validate(json.loads(completion.text), SCHEMA)


def test_a_forward_set_on_the_output_layer_is_kept_and_a_dispatched_one_left_alone(
    engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = engine.loaded.model.get_output_embeddings()
    calls: list[int] = []

    def wrapped(hidden: torch.Tensor) -> torch.Tensor:  # as accelerate wraps a module's forward
        calls.append(hidden.shape[0])
        return torch.nn.Linear.forward(head, hidden)

    selections: list[object] = []
    monkeypatch.setattr(grammar_output, "selected_scores", lambda *a: selections.append(a))
    monkeypatch.setattr(head, "forward", wrapped)
    monkeypatch.setattr(head, "_hf_hook", object(), raising=False)
    completions = engine.generate(_requests(48))
    assert head.forward is wrapped and calls and not selections
    for completion in completions[:-1]:
        jsonschema.validate(json.loads(completion.text), SCHEMA)

    monkeypatch.delattr(head, "_hf_hook")

    def counted(*args: Any) -> torch.Tensor:
        selections.append(args)
        return selected_scores(*args)

    monkeypatch.setattr(grammar_output, "selected_scores", counted)
    engine.generate(_requests(48))
    assert selections and head.forward is wrapped  # put back after the layer ran in its place
