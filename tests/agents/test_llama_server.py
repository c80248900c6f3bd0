"""The ``openai`` engine against a real OpenAI-compatible server: llama-cpp-python on 127.0.0.1.

The server runs google/gemma-3-270m (the real-weights GGUF file, tests/real_gemma.py). It refuses
``response_format`` of type ``json_schema`` with an HTTP 500 and takes a GBNF grammar in its
``grammar`` field, so these tests show the engine negotiating a schema form on a server it does not
control, and the same decision checks as the transformers engine's real-weights tier: every call
valid, within its declared ranges and digit limits. The grammar is medgraph's own
(:mod:`medgraph.agents.gbnf`): llama-cpp-python's converter for ``{"type": "json_object",
"schema": ...}`` drops number ranges.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage

from medgraph.agents import MedGemmaChat
from medgraph.agents.engines.openai_engine import forget_schema_forms, remembered_schema_form
from tests.agents.decision_checks import DECISION_TOKEN_LIMIT, TOOLS, assert_call_bounded
from tests.llama_server import LlamaServer, require_llama_cpp
from tests.support import merged_chunks

pytestmark = [pytest.mark.llama_server, pytest.mark.slow, pytest.mark.timeout(900)]

MAX_CALLS = 2
"""Two calls at most per decision (``maxItems`` in the schema the server gets): the default four
lets the base model repeat a call to the token budget, and llama-cpp-python's grammar costs about
half a second per token over the 262k vocabulary on a busy 2-core machine."""


# Few prompts: on 2 CPU cores a constrained decision over Gemma's 262k vocabulary takes 10-40 s.
PROMPTS = [
    "Compute the BMI of a man weighing 82 kg who is 178 cm tall.",
    "9" * 300,
    "Find evidence on aspirin for primary prevention of cardiovascular disease.",
]


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python's server over the Gemma 3 270M GGUF file, for this module."""
    require_llama_cpp()
    from tests.real_gemma import gguf_file

    log_path = Path(tmp_path_factory.mktemp("llama-server")) / "server.log"
    with LlamaServer(gguf_file(), log_path) as server:
        yield server
        forget_schema_forms(server.base_url)


def _chat(server: LlamaServer, max_new_tokens: int = DECISION_TOKEN_LIMIT) -> MedGemmaChat:
    return MedGemmaChat(
        model="gemma-3-270m",
        engine="openai",
        base_url=server.base_url,
        max_new_tokens=max_new_tokens,
        max_tool_calls=MAX_CALLS,
        timeout=300.0,
    )


def _check_decision(reply: BaseMessage, choice: str) -> bool:
    """Check one decision's bounds; True when it holds valid calls, False when it was refused."""
    assert isinstance(reply, AIMessage), reply
    usage: Any = reply.usage_metadata
    # At most two rounds (the reply and one repair), each within the decision budget.
    assert usage["output_tokens"] <= 2 * DECISION_TOKEN_LIMIT, usage
    assert len(reply.tool_calls) <= MAX_CALLS
    for call in reply.tool_calls:
        assert_call_bounded(call)
        if choice != "any":
            assert call["name"] == choice
    if reply.tool_calls:
        return True
    # No valid call after the repair round: reported, with the reason, never raised.
    assert reply.invalid_tool_calls and all(c["error"] for c in reply.invalid_tool_calls), reply
    return False


def test_server_refuses_json_schema_and_the_engine_steps_down_once(llama: LlamaServer) -> None:
    forget_schema_forms(llama.base_url)
    before = len(llama.http_statuses())
    first = _chat(llama).bind_tools(TOOLS, tool_choice="bmi").invoke(PROMPTS[0])
    statuses = llama.http_statuses()[before:]
    # json_schema answered 500 (llama-cpp-python's refusal), the GBNF grammar was taken...
    assert statuses[:2] == [500, 200], statuses
    assert "Input should be 'text' or 'json_object'" in llama.log()
    assert remembered_schema_form(llama.base_url) == "gbnf"
    _check_decision(first, "bmi")
    # ...and a new chat model on the same server goes straight to it.
    before = len(llama.http_statuses())
    second = _chat(llama).bind_tools(TOOLS, tool_choice="bmi").invoke("BMI for 45 kg, 150 cm?")
    assert 500 not in llama.http_statuses()[before:]
    _check_decision(second, "bmi")


def test_plain_answers_and_streams_need_no_schema(llama: LlamaServer) -> None:
    chat = _chat(llama, max_new_tokens=8)
    before = len(llama.http_statuses())
    answer = chat.invoke("What is a normal resting heart rate?")
    chunks = list(chat.stream("What is a normal resting heart rate?"))
    assert isinstance(answer.content, str) and answer.content.strip()
    assert len(chunks) > 1 and "".join(str(c.content) for c in chunks).strip()
    assert llama.http_statuses()[before:] == [200, 200]


@pytest.mark.parametrize("choice", ["any", "bmi"])
def test_decisions_are_bounded_and_valid_or_reported(llama: LlamaServer, choice: str) -> None:
    bound = _chat(llama).bind_tools(TOOLS, tool_choice=choice)
    valid = [_check_decision(bound.invoke(prompt), choice) for prompt in PROMPTS]
    print(f"\n[llama.cpp server] tool_choice={choice!r}: {sum(valid)}/{len(valid)} valid")
    assert all(valid), "a decision through the server's grammar was not a valid call"


def test_streamed_decision_goes_through_the_same_negotiation(llama: LlamaServer) -> None:
    forget_schema_forms(llama.base_url)
    before = len(llama.http_statuses())
    bound = _chat(llama).bind_tools(TOOLS, tool_choice="bmi")
    reply = merged_chunks(list(bound.stream(PROMPTS[0])))
    assert llama.http_statuses()[before:][:2] == [500, 200]
    assert remembered_schema_form(llama.base_url) == "gbnf"
    assert _check_decision(reply, "bmi")


def test_auto_gives_a_valid_call_or_an_answer(llama: LlamaServer) -> None:
    bound = _chat(llama).bind_tools(TOOLS, tool_choice="auto")
    reply = bound.invoke("hello")
    if reply.tool_calls or reply.invalid_tool_calls:
        _check_decision(reply, "any")
    else:
        assert isinstance(reply.content, str) and reply.content.strip(), reply
