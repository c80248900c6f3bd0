"""MedGemmaChat's ``openai`` engine against a real OpenAI-compatible HTTP server on 127.0.0.1.

The server (tests/openai_server.py) answers from the tiny random Gemma 3 checkpoint through the
transformers engine, with ``response_format`` JSON schemas used for guided decoding the way vLLM
uses them, so these tests exercise the whole path: the official ``openai`` client, HTTP, SSE
streaming, guided decoding, the tool protocol and the error mapping.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import jsonschema
import numpy as np
import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from PIL import Image
from pydantic import BaseModel, Field

from medgraph.agents.chat_model import MedGemmaChat
from medgraph.agents.engines.openai_engine import (
    SCHEMA_FORMS,
    forget_schema_forms,
    remembered_schema_form,
)
from medgraph.errors import EngineError
from tests.openai_server import Exchange, OpenAICompatibleServer
from tests.support import merged_chunks
from tests.tiny_gemma import MM_TOKENS_PER_IMAGE

SYSTEM_TEXT = "You are a careful clinical assistant."
# The tiny tokenizer spells JSON almost a character per token: a decision needs ~60 tokens.
TOOL_BUDGET = 96
QUESTION = "What does the chest radiograph show?"
STREAM_PROMPTS = (
    "Is aspirin safe?",
    "Summarise the trial.",
    "What is CKD stage 3a?",
    "Describe the findings.",
    "List the citations.",
    "Cardiomegaly?",
)


@tool
def search_literature(query: str, max_results: int = 5) -> str:
    """Search the medical literature index for passages relevant to a query."""
    return query


@tool
def compute_bmi(weight_kg: float, height_m: float) -> float:
    """Compute the body-mass index from weight in kilograms and height in metres."""
    return weight_kg / height_m**2


@tool
def lookup_drug(name: str, route: Literal["oral", "iv"] = "oral") -> str:
    """Look up a drug monograph by its generic name."""
    return name


TOOLS: list[BaseTool] = [search_literature, compute_bmi, lookup_drug]
TOOL_PARAMETERS = {t.name: convert_to_openai_tool(t)["function"]["parameters"] for t in TOOLS}


class Triage(BaseModel):
    """A structured triage decision."""

    urgency: Literal["routine", "urgent", "emergency"]
    reason: str


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_multimodal: str) -> Iterator[OpenAICompatibleServer]:
    """One OpenAI-compatible server over the tiny multimodal checkpoint for this module."""
    with OpenAICompatibleServer(tiny_multimodal) as running:
        yield running


@pytest.fixture
def served(server: OpenAICompatibleServer) -> OpenAICompatibleServer:
    """The module's server with its exchange log and the engine's memory of it emptied."""
    server.clear()
    forget_schema_forms(server.base_url)
    return server


@pytest.fixture
def make_chat(served: OpenAICompatibleServer) -> Callable[..., MedGemmaChat]:
    """Build a MedGemmaChat on the openai engine pointed at the test server."""

    def build(**overrides: Any) -> MedGemmaChat:
        params: dict[str, Any] = {
            "model": served.model_name,
            "engine": "openai",
            "base_url": served.base_url,
            "max_new_tokens": 12,
            "timeout": 60.0,
        }
        params.update(overrides)
        return MedGemmaChat(**params)

    return build


@pytest.fixture
def free_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def only_chat(server: OpenAICompatibleServer) -> Exchange:
    """The single chat exchange of this test (fails if there were several)."""
    chats = server.chat_exchanges()
    assert len(chats) == 1, [c.body for c in chats]
    return chats[0]


def sent_schema(exchange: Exchange) -> dict[str, Any]:
    """The JSON schema the client put in ``response_format``."""
    assert exchange.body is not None
    response_format = exchange.body["response_format"]
    assert response_format["type"] == "json_schema"
    schema: dict[str, Any] = response_format["json_schema"]["schema"]
    return schema


def reply_text(exchange: Exchange) -> str:
    """The content of a non-streamed reply."""
    assert exchange.status == 200 and exchange.response is not None
    return str(exchange.response["choices"][0]["message"]["content"])


# ---------------------------------------------------------------------------------------------
# Plain answers, images, streaming
# ---------------------------------------------------------------------------------------------


def test_text_answer_carries_the_servers_usage(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    message = make_chat().invoke([SystemMessage(SYSTEM_TEXT), HumanMessage(QUESTION)])

    exchange = only_chat(served)
    assert isinstance(message, AIMessage)
    assert message.content and message.content == reply_text(exchange)
    usage = exchange.response["usage"] if exchange.response else {}
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == usage["prompt_tokens"] > 0
    assert message.usage_metadata["output_tokens"] == usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 12
    assert message.usage_metadata["total_tokens"] == usage["total_tokens"]
    assert message.tool_calls == [] and message.invalid_tool_calls == []


def test_request_shape_system_folded_and_budget_sent(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    make_chat(max_new_tokens=3).invoke([SystemMessage(SYSTEM_TEXT), HumanMessage(QUESTION)])

    exchange = only_chat(served)
    body = exchange.body
    assert body is not None and exchange.response is not None
    assert body["model"] == served.model_name
    assert body["max_tokens"] == 3
    assert body["temperature"] == 0.0
    assert body["stream"] is False
    assert "response_format" not in body
    assert [m["role"] for m in body["messages"]] == ["user"]
    content = body["messages"][0]["content"]
    assert content.startswith(SYSTEM_TEXT) and content.endswith(QUESTION)
    assert 0 < exchange.response["usage"]["completion_tokens"] <= 3  # the server honoured it


def test_multi_turn_history_alternates_user_and_assistant(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    history = [
        SystemMessage(SYSTEM_TEXT),
        HumanMessage("Find trials of statins in CKD."),
        AIMessage(
            content="",
            tool_calls=[
                {"name": "search_literature", "args": {"query": "statins CKD"}, "id": "call_1"}
            ],
        ),
        ToolMessage(
            "[1] SHARP trial: fewer events.", tool_call_id="call_1", name="search_literature"
        ),
        HumanMessage("Summarise it."),
    ]
    make_chat(max_new_tokens=1).invoke(history)

    body = only_chat(served).body
    assert body is not None
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert "system" not in roles
    first, replayed, results = (m["content"] for m in body["messages"])
    assert first.startswith(SYSTEM_TEXT) and "statins in CKD" in first
    assert "search_literature" in replayed and "statins CKD" in replayed
    assert "SHARP trial" in results and results.endswith("Summarise it.")


def test_image_travels_as_a_lossless_data_url(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer, data_dir: Path
) -> None:
    path = data_dir / "images" / "nih-cxr14" / "00000001_000.png"
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    with_image = HumanMessage(
        content=[
            {"type": "text", "text": "Describe this radiograph."},
            {"type": "image", "base64": encoded, "mime_type": "image/png"},
        ]
    )
    chat = make_chat(max_new_tokens=1)
    chat.invoke([SystemMessage(SYSTEM_TEXT), with_image])
    chat.invoke([SystemMessage(SYSTEM_TEXT), HumanMessage("Describe this radiograph.")])

    image_exchange, text_exchange = served.chat_exchanges()
    assert image_exchange.body is not None and image_exchange.status == 200
    [message] = image_exchange.body["messages"]
    assert message["role"] == "user"
    parts = message["content"]
    assert [p["type"] for p in parts] == ["text", "text", "image_url"]
    assert parts[0]["text"] == SYSTEM_TEXT
    url = parts[2]["image_url"]["url"]
    header, _, payload = url.partition(",")
    assert header == "data:image/png;base64"
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))
    original = np.asarray(Image.open(path).convert("RGB"))
    assert sent.shape == original.shape
    assert np.array_equal(sent, original)
    # The server put the image into the prompt: its soft tokens count as prompt tokens.
    assert image_exchange.response is not None and text_exchange.response is not None
    image_prompt = image_exchange.response["usage"]["prompt_tokens"]
    text_prompt = text_exchange.response["usage"]["prompt_tokens"]
    assert image_prompt >= text_prompt + MM_TOKENS_PER_IMAGE


def test_stream_arrives_in_chunks_that_add_up_to_the_plain_answer(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    chat = make_chat(max_new_tokens=16)
    # A random model emits runs of byte tokens that are not UTF-8; a tokenizer decodes such a run
    # differently whole and piece by piece. Real text decodes the same either way: pick a
    # prompt whose greedy answer is real text.
    for prompt in STREAM_PROMPTS:
        whole = chat.invoke(prompt)
        if "\ufffd" not in str(whole.content):
            break
    else:
        pytest.fail(f"every prompt in {STREAM_PROMPTS} gave undecodable bytes; add another")
    served.clear()
    chunks = [c.content for c in chat.stream(prompt)]
    chat.invoke(prompt)

    streamed, plain = served.chat_exchanges()
    assert plain.body is not None and streamed.body is not None
    assert streamed.body["stream"] is True and plain.body["stream"] is False
    assert streamed.body["messages"] == plain.body["messages"]
    assert all(isinstance(c, str) for c in chunks)
    content_chunks = [str(c) for c in chunks if c]
    assert len(content_chunks) >= 3
    assert "".join(content_chunks) == whole.content == reply_text(plain)
    # What reached the client is what the server sent, event by event, ending as OpenAI's do.
    sent = [
        c["choices"][0]["delta"].get("content")
        for c in streamed.chunks
        if c["choices"] and c["choices"][0]["delta"].get("content")
    ]
    assert sent == content_chunks
    assert streamed.chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert streamed.chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_stream_broken_by_the_server_raises_engine_error(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    received: list[str] = []
    with served.behaving(fail_stream_after=1), pytest.raises(EngineError) as caught:
        for chunk in make_chat(max_new_tokens=16).stream(QUESTION):
            received.append(str(chunk.content))

    assert len([c for c in received if c]) == 1
    assert served.base_url in str(caught.value)
    assert "while streaming" in str(caught.value)
    assert "died mid-stream" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Tool calls and structured output through guided decoding
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        "Find randomized trials of aspirin for primary prevention.",
        "A patient weighs 82 kg and is 1.75 m tall. What is the BMI?",
        "What is the usual oral dose of metformin?",
    ],
)
def test_any_tool_choice_always_yields_schema_valid_calls(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer, prompt: str
) -> None:
    chat = make_chat(max_new_tokens=TOOL_BUDGET).bind_tools(TOOLS, tool_choice="any")
    message = chat.invoke([SystemMessage(SYSTEM_TEXT), HumanMessage(prompt)])

    exchange = only_chat(served)  # guided decoding: no repair round was needed
    schema = sent_schema(exchange)
    assert exchange.body is not None
    assert exchange.body["response_format"]["json_schema"]["name"] == "decision"
    named = json.dumps(schema)
    assert all(t.name in named for t in TOOLS)
    reply = json.loads(reply_text(exchange))
    jsonschema.Draft202012Validator(schema).validate(reply)

    assert isinstance(message, AIMessage)
    assert message.invalid_tool_calls == []
    assert 1 <= len(message.tool_calls) <= 4
    for call in message.tool_calls:
        assert call["name"] in TOOL_PARAMETERS
        jsonschema.Draft202012Validator(TOOL_PARAMETERS[call["name"]]).validate(call["args"])
        assert call["id"]
    assert [c["name"] for c in message.tool_calls] == [c["name"] for c in reply["tool_calls"]]


def test_named_tool_choice_forces_exactly_that_tool(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    chat = make_chat(max_new_tokens=TOOL_BUDGET).bind_tools(TOOLS, tool_choice="compute_bmi")
    message = chat.invoke("Search the literature on statins.")  # a prompt pulling elsewhere

    exchange = only_chat(served)
    schema = sent_schema(exchange)
    jsonschema.Draft202012Validator(schema).validate(json.loads(reply_text(exchange)))
    assert "search_literature" not in json.dumps(schema)
    assert [c["name"] for c in message.tool_calls] == ["compute_bmi"]
    jsonschema.Draft202012Validator(TOOL_PARAMETERS["compute_bmi"]).validate(
        message.tool_calls[0]["args"]
    )
    assert message.invalid_tool_calls == []


def test_tool_choice_none_sends_no_schema(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    message = make_chat(max_new_tokens=4).bind_tools(TOOLS, tool_choice="none").invoke(QUESTION)

    body = only_chat(served).body
    assert body is not None
    assert "response_format" not in body
    assert "compute_bmi" not in json.dumps(body["messages"])
    assert message.tool_calls == [] and message.invalid_tool_calls == []
    assert message.content == reply_text(only_chat(served))


def test_structured_output_is_guided_by_the_schema(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    result = make_chat(max_new_tokens=48).with_structured_output(Triage).invoke(QUESTION)

    exchange = only_chat(served)
    schema = sent_schema(exchange)
    assert set(schema["properties"]) == {"urgency", "reason"}
    assert isinstance(result, Triage)
    assert result == Triage.model_validate_json(reply_text(exchange))


def test_server_without_guided_decoding_falls_back_to_parse_and_repair(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    from tests.openai_server import schema_form_of

    chat = make_chat(max_new_tokens=24).bind_tools(TOOLS, tool_choice="any")
    with served.behaving(schema_forms=()):
        first = chat.invoke("Find trials of aspirin.")
        after_first = len(served.chat_exchanges())
        second = chat.invoke("Compute a BMI for 70 kg and 1.7 m.")

    exchanges = served.chat_exchanges()
    refused = exchanges[: len(SCHEMA_FORMS)]
    # Every schema form was tried once and refused, strongest first...
    assert [schema_form_of(e.body or {}) for e in refused] == list(SCHEMA_FORMS)
    for exchange in refused:
        assert exchange.status == 400 and exchange.response is not None
        assert "schema form" in exchange.response["error"]["message"]
    # ...then the question was asked again without the schema, and the engine remembered.
    assert len(exchanges) > after_first >= len(SCHEMA_FORMS) + 1
    for exchange in exchanges[len(SCHEMA_FORMS) :]:
        assert exchange.status == 200 and exchange.body is not None
        assert schema_form_of(exchange.body) is None
        assert "compute_bmi" in exchange.body["messages"][0]["content"]  # tools in the prompt
    for message in (first, second):
        assert isinstance(message, AIMessage)
        assert message.tool_calls or message.invalid_tool_calls
        for call in message.tool_calls:
            jsonschema.Draft202012Validator(TOOL_PARAMETERS[call["name"]]).validate(call["args"])
        for invalid in message.invalid_tool_calls:
            assert invalid["error"]


@pytest.mark.parametrize("status", [400, 500, 503])
def test_an_error_unrelated_to_the_schema_raises_at_once_and_keeps_guided_decoding(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer, status: int
) -> None:
    from tests.openai_server import schema_form_of

    chat = make_chat(max_new_tokens=TOOL_BUDGET).bind_tools(TOOLS, tool_choice="any")
    with served.behaving(fail_status=status), pytest.raises(EngineError) as caught:
        chat.invoke("Find trials of aspirin.")
    assert f"HTTP {status}" in str(caught.value) and served.base_url in str(caught.value)
    message = chat.invoke("Find trials of aspirin.")

    forms = [schema_form_of(e.body or {}) for e in served.chat_exchanges()]
    # The outage was not mistaken for a refused form: no stepping down, no retry...
    assert forms == ["json_schema", "json_schema"], "an unrelated error disabled guided decoding"
    # ...and once the server is back, the schema guides the decision (no repair round).
    assert message.tool_calls and message.invalid_tool_calls == []


# ---------------------------------------------------------------------------------------------
# Authentication and failures
# ---------------------------------------------------------------------------------------------


def test_api_key_is_sent_as_bearer_token(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    with served.behaving(api_key="sk-test-7f3a"):
        message = make_chat(api_key="sk-test-7f3a", max_new_tokens=2).invoke(QUESTION)
        with pytest.raises(EngineError) as missing:
            make_chat(max_new_tokens=2).invoke(QUESTION)
        with pytest.raises(EngineError) as wrong:
            make_chat(api_key="sk-wrong", max_new_tokens=2).invoke(QUESTION)

    accepted, refused, refused_wrong = served.chat_exchanges()
    assert accepted.headers["authorization"] == "Bearer sk-test-7f3a"
    assert accepted.status == 200 and isinstance(message, AIMessage)
    assert refused.status == 401 and refused_wrong.status == 401
    for error in (missing.value, wrong.value):
        assert "HTTP 401" in str(error) and "API key" in str(error)
        assert "sk-test-7f3a" not in str(error)


def test_http_500_becomes_engine_error_naming_server_and_status(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    with served.behaving(fail_status=500), pytest.raises(EngineError) as caught:
        make_chat().invoke(QUESTION)

    message = str(caught.value)
    assert served.base_url in message
    assert "HTTP 500" in message
    assert "had an error while processing" in message  # the server's own words
    assert len(served.chat_exchanges()) == 1  # no silent retries


def test_unknown_model_name_becomes_engine_error_with_a_hint(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    with pytest.raises(EngineError) as caught:
        make_chat(model="medgemma-typo").invoke(QUESTION)

    assert "HTTP 404" in str(caught.value) and "'medgemma-typo'" in str(caught.value)


def test_slow_server_times_out_as_engine_error(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    chat = make_chat(timeout=0.5)
    assert chat.backend is not None  # build the client first: time only the request
    started = time.perf_counter()
    with served.behaving(delay_seconds=5.0), pytest.raises(EngineError) as caught:
        chat.invoke(QUESTION)
    elapsed = time.perf_counter() - started

    assert "timeout" in str(caught.value) and "0.5 s" in str(caught.value)
    assert served.base_url in str(caught.value)
    assert elapsed < 3.0  # gave up at its own timeout, not when the server answered
    assert len(served.chat_exchanges()) == 1  # and did not retry


def test_nothing_listening_is_engine_error(free_port: int) -> None:
    url = f"http://127.0.0.1:{free_port}/v1"
    chat = MedGemmaChat(model="tiny-medgemma", engine="openai", base_url=url, timeout=5.0)

    with pytest.raises(EngineError) as plain:
        chat.invoke(QUESTION)
    with pytest.raises(EngineError) as streamed:
        list(chat.stream(QUESTION))

    for error in (plain.value, streamed.value):
        assert "cannot reach" in str(error) and url in str(error)


def test_models_endpoint_lists_the_served_model(served: OpenAICompatibleServer) -> None:
    client = openai.OpenAI(base_url=served.base_url, api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == [served.model_name]
    with served.behaving(api_key="k"), pytest.raises(openai.AuthenticationError):
        client.models.list()


@pytest.mark.parametrize(
    ("accepted", "refusal"),
    [("json_object_schema", 500), ("guided_json", 400), ("format", 422)],
)
def test_schema_form_is_negotiated_and_remembered(
    make_chat: Callable[..., MedGemmaChat],
    served: OpenAICompatibleServer,
    accepted: str,
    refusal: int,
) -> None:
    from tests.openai_server import schema_form_of

    chat = make_chat(max_new_tokens=TOOL_BUDGET)
    bound = chat.bind_tools(TOOLS, tool_choice="any")
    with served.behaving(schema_forms=(accepted,), schema_refusal_status=refusal):
        first = bound.invoke("Find trials of aspirin.")
        asked_first = len(served.chat_exchanges())
        whole = merged_chunks(list(bound.stream("Compute a BMI for 70 kg and 1.7 m.")))
    for reply in (first, whole):
        assert reply.tool_calls and not reply.invalid_tool_calls
    exchanges = served.chat_exchanges()
    forms = [schema_form_of(e.body or {}) for e in exchanges]
    # Stronger forms were refused (never raised), the accepted one carried the schema...
    assert [e.status for e in exchanges[: asked_first - 1]] == [refusal] * (asked_first - 1)
    assert forms[asked_first - 1] == accepted and exchanges[asked_first - 1].status == 200
    # ...and the next decision went straight to it.
    assert forms[asked_first:] == [accepted]
    assert chat.backend.schema_form == accepted  # type: ignore[attr-defined]


def test_llama_cpp_style_500_refusal_steps_down_and_other_engines_reuse_the_form(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    """llama-cpp-python refuses ``json_schema`` with a 500 whose only clue is its message."""
    from tests.openai_server import schema_form_of

    llama_cpp_refusal = (
        "1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', "
        "'type'), 'msg': \"Input should be 'text' or 'json_object'\"}"
    )
    with served.behaving(
        schema_forms=("json_object_schema",),
        schema_refusal_status=500,
        schema_refusal_message=llama_cpp_refusal,
    ):
        first = make_chat(max_new_tokens=TOOL_BUDGET).bind_tools(TOOLS, tool_choice="any")
        reply = first.invoke("Find trials of aspirin.")
        # A second chat model (a new engine) on the same server does not probe again.
        second = make_chat(max_new_tokens=TOOL_BUDGET).bind_tools(TOOLS, tool_choice="compute_bmi")
        streamed = merged_chunks(list(second.stream("Compute a BMI for 70 kg and 1.7 m.")))
    for message in (reply, streamed):
        assert message.tool_calls and not message.invalid_tool_calls
    exchanges = served.chat_exchanges()
    # This server (like llama.cpp builds without a grammar field) also refuses the GBNF grammar.
    assert [schema_form_of(e.body or {}) for e in exchanges] == [
        "json_schema",
        "gbnf",
        "json_object_schema",
        "json_object_schema",
    ]
    assert [e.status for e in exchanges] == [500, 500, 200, 200]
    assert remembered_schema_form(served.base_url + "/") == "json_object_schema"
    forget_schema_forms(served.base_url)
    assert remembered_schema_form(served.base_url) is None


def test_gbnf_form_carries_the_schema_as_a_grammar_with_its_ranges(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    from medgraph.agents.gbnf import schema_gbnf, schema_regex
    from tests.openai_server import schema_form_of

    bound = make_chat(max_new_tokens=TOOL_BUDGET).bind_tools(TOOLS, tool_choice="any")
    with served.behaving(schema_forms=("gbnf",), schema_refusal_status=500):
        bound.invoke("Compute a BMI for 70 kg and 1.7 m.")
        bound.invoke("Find trials of aspirin.")
    # Replies the tiny model writes freely here go to a repair round, also sent as a grammar.
    refused, taken, *later = served.chat_exchanges()
    assert [schema_form_of(e.body or {}) for e in (refused, taken, *later)] == ["json_schema"] + [
        "gbnf"
    ] * (1 + len(later))
    assert [e.status for e in (refused, taken, *later)] == [500] + [200] * (1 + len(later))
    assert remembered_schema_form(served.base_url) == "gbnf"
    # The grammar is the one the refused json_schema request carried, ranges included.
    assert refused.body is not None and taken.body is not None
    schema = refused.body["response_format"]["json_schema"]["schema"]
    assert taken.body["grammar"] == schema_gbnf(schema)
    language = schema_regex(schema)
    call = {"name": "search_literature", "arguments": {"query": "aspirin", "max_results": 5}}
    assert language.fullmatch(json.dumps({"tool_calls": [call]}, separators=(",", ":")))
    call["arguments"]["max_results"] = 10**20  # beyond the bounded integer range
    assert not language.fullmatch(json.dumps({"tool_calls": [call]}, separators=(",", ":")))


@tool
def lookup_record(accession: str = Field(pattern=r"^[A-Z]{2}[0-9]{6}$")) -> str:
    """Look up a record by its accession number."""
    return accession


def test_schema_the_grammar_cannot_express_skips_that_form_without_forgetting_it(
    make_chat: Callable[..., MedGemmaChat], served: OpenAICompatibleServer
) -> None:
    from tests.openai_server import schema_form_of

    forms = ("gbnf", "json_object_schema")
    with served.behaving(schema_forms=forms, schema_refusal_status=500):
        make_chat(max_new_tokens=TOOL_BUDGET).bind_tools([lookup_record], tool_choice="any").invoke(
            "Look up AB123456."
        )
        after_pattern = [schema_form_of(e.body or {}) for e in served.chat_exchanges()]
        make_chat(max_new_tokens=TOOL_BUDGET).bind_tools(TOOLS, tool_choice="any").invoke(
            "Compute a BMI for 70 kg and 1.7 m."
        )
    # A string pattern has no GBNF here: that request went on to json_object + schema...
    assert after_pattern[0] == "json_schema"
    assert set(after_pattern[1:]) == {"json_object_schema"}
    # ...but the server never refused the grammar, so the next schema is sent as one.
    assert schema_form_of(served.chat_exchanges()[-1].body or {}) == "gbnf"
    assert remembered_schema_form(served.base_url) == "gbnf"
