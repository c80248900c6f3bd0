"""MedGemmaChat on tiny random-weight Gemma 3 checkpoints, loaded through from_pretrained."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pydicom
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from medgraph.agents import MedGemmaChat
from medgraph.agents.conversation import to_conversation
from medgraph.agents.engines.base import Completion, GenerationRequest
from medgraph.agents.engines.transformers_engine import (
    TransformersEngine,
    cached_models,
    load_model,
)
from medgraph.agents.protocol import tool_specs
from medgraph.errors import ConfigurationError, EngineError, ModelLoadError
from tests.support import merged_chunks


@tool
def search_literature(query: str, k: int = 5) -> str:
    """Search the indexed medical literature for passages about ``query``."""
    return f"results for {query}"


@tool
def body_mass_index(weight_kg: float, height_m: float) -> float:
    """Body mass index in kg/m2 from weight and height."""
    return weight_kg / height_m**2


@tool
def classify_urgency(level: str, reasons: list[str]) -> str:
    """Record an urgency level with its reasons."""
    return level


TOOLS = [search_literature, body_mass_index, classify_urgency]
SCHEMAS = {spec.name: spec.parameters for spec in tool_specs(TOOLS)}

PROMPTS = [
    f"Patient {i}: {topic}. What should we look up?"
    for i, topic in enumerate(
        [
            "metformin and lactic acidosis",
            "statins after stroke",
            "aspirin for primary prevention",
            "warfarin dosing in the elderly",
            "CT angiography for pulmonary embolism",
            "eGFR decline in diabetes",
            "sepsis bundles",
            "asthma biologics",
            "hip fracture surgery timing",
            "COPD exacerbation steroids",
        ]
        * 5
    )
]


@pytest.fixture(scope="module")
def chat(tiny_multimodal: str) -> MedGemmaChat:
    return MedGemmaChat(model=tiny_multimodal, max_new_tokens=96)


def assert_valid_call(call: dict[str, Any]) -> None:
    assert call["name"] in SCHEMAS, call
    jsonschema.validate(call["args"], SCHEMAS[call["name"]])
    assert call["id"]


def test_multimodal_checkpoint_loads_with_processor(tiny_multimodal: str) -> None:
    loaded = load_model(tiny_multimodal)
    assert type(loaded.model).__name__ == "Gemma3ForConditionalGeneration"
    assert loaded.processor is not None and loaded.multimodal


def test_text_only_checkpoint_loads_causal_lm(tiny_text: str) -> None:
    loaded = load_model(tiny_text)
    assert type(loaded.model).__name__ == "Gemma3ForCausalLM"
    assert loaded.processor is None and not loaded.multimodal


def test_instances_naming_the_same_model_share_one_copy(tiny_multimodal: str) -> None:
    first = TransformersEngine(tiny_multimodal)
    second = MedGemmaChat(model=tiny_multimodal).backend
    assert isinstance(second, TransformersEngine)
    assert first.loaded is second.loaded
    assert first.loaded.model.dtype.is_floating_point  # fp32 on CPU
    other = TransformersEngine(tiny_multimodal, dtype="bfloat16")
    assert other.loaded is not first.loaded
    assert len([k for k in cached_models() if k.model == tiny_multimodal]) == 2


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="terms"):
        MedGemmaChat(model=str(tmp_path / "no-such-model")).invoke("hi")


def test_any_tool_choice_gives_fifty_schema_valid_calls(chat: MedGemmaChat) -> None:
    replies = chat.bind_tools(TOOLS, tool_choice="any").batch(PROMPTS)
    assert len(replies) == 50
    for reply in replies:
        assert isinstance(reply, AIMessage)
        assert reply.tool_calls and not reply.invalid_tool_calls
        for call in reply.tool_calls:
            assert_valid_call(call)


def test_named_tool_choice_always_calls_that_tool(chat: MedGemmaChat) -> None:
    bound = chat.bind_tools(TOOLS, tool_choice="body_mass_index")
    for prompt in PROMPTS[:6]:
        reply = bound.invoke(prompt)
        assert [c["name"] for c in reply.tool_calls] == ["body_mass_index"]
        assert_valid_call(reply.tool_calls[0])


def test_none_tool_choice_never_calls(chat: MedGemmaChat) -> None:
    replies = chat.bind_tools(TOOLS, tool_choice="none").batch(PROMPTS[:6])
    assert all(not r.tool_calls and not r.invalid_tool_calls for r in replies)


def test_auto_choice_yields_calls_or_an_answer(chat: MedGemmaChat) -> None:
    for reply in chat.bind_tools(TOOLS, tool_choice="auto").batch(PROMPTS[:8]):
        assert not reply.invalid_tool_calls
        assert reply.tool_calls or isinstance(reply.content, str)
        for call in reply.tool_calls:
            assert_valid_call(call)


def test_batch_runs_one_generate_call(chat: MedGemmaChat, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = chat.backend
    assert isinstance(engine, TransformersEngine)
    calls: list[int] = []
    original = engine.loaded.model.generate

    def counting_generate(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(engine.loaded.model, "generate", counting_generate)
    replies = chat.batch(PROMPTS[:5])
    assert calls == [5]
    assert len(replies) == 5


def test_batched_answers_equal_single_answers(chat: MedGemmaChat) -> None:
    # Left padding must not change greedy results.
    prompts = ["short", "a considerably longer prompt about renal function in older adults"]
    batched = [m.content for m in chat.batch(prompts)]
    single = [chat.invoke(p).content for p in prompts]
    assert batched == single


def test_streaming_yields_tokens_that_add_up_to_the_answer(chat: MedGemmaChat) -> None:
    chunks = [c.content for c in chat.stream("Summarise aspirin trials.")]
    assert len([c for c in chunks if c]) > 3
    assert "".join(str(c) for c in chunks) == chat.invoke("Summarise aspirin trials.").content


def test_tool_turn_streams_as_one_chunk_with_tool_call_chunks(chat: MedGemmaChat) -> None:
    chunks = list(chat.bind_tools(TOOLS, tool_choice="any").stream("Find statin trials."))
    with_calls = [c for c in chunks if c.tool_call_chunks]
    assert len(with_calls) == 1
    merged = merged_chunks(chunks)
    assert merged.tool_calls
    for call in merged.tool_calls:
        assert_valid_call(call)


class Triage(BaseModel):
    """Structured triage decision."""

    urgent: bool
    specialty: str = Field(json_schema_extra={"enum": ["cardiology", "nephrology", "other"]})
    confidence: int = Field(ge=0, le=100)


def test_structured_output_parses_into_the_model(chat: MedGemmaChat) -> None:
    structured = chat.with_structured_output(Triage)
    for prompt in PROMPTS[:4]:
        result = structured.invoke(prompt)
        assert isinstance(result, Triage)
        assert result.specialty in {"cardiology", "nephrology", "other"}


def test_structured_output_from_json_schema_dict(chat: MedGemmaChat) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["yes", "no", "maybe"]}},
        "required": ["answer"],
    }
    result = chat.with_structured_output(schema).invoke("Does metformin cause lactic acidosis?")
    assert isinstance(result, dict) and result["answer"] in {"yes", "no", "maybe"}


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _image_inputs(engine: TransformersEngine, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    message = HumanMessage(content=[*blocks, {"type": "text", "text": "Describe the image."}])
    request = GenerationRequest(conversation=to_conversation([message]), max_new_tokens=8)
    return engine._inputs([request])


def test_images_reach_pixel_values(chat: MedGemmaChat, data_dir: Path) -> None:
    engine = chat.backend
    assert isinstance(engine, TransformersEngine)
    cxr = data_dir / "images" / "nih-cxr14"
    first = _image_inputs(engine, [{"type": "image", "url": _data_url(cxr / "00000001_000.png")}])
    second = _image_inputs(engine, [{"type": "image", "path": str(cxr / "00027426_000.png")}])
    assert tuple(first["pixel_values"].shape) == (1, 3, 64, 64)
    assert not bool((first["pixel_values"] == second["pixel_values"]).all())
    image_token = engine.loaded.tokenizer.convert_tokens_to_ids("<image_soft_token>")
    assert int((first["input_ids"] == image_token).sum()) == 16
    dicoms = [
        data_dir / "images" / "dicom" / "encapsulated_cxr.dcm",
        Path(pydicom.data.get_testdata_file("CT_small.dcm")),
        Path(pydicom.data.get_testdata_file("MR_small.dcm")),
    ]
    inputs = _image_inputs(engine, [{"type": "image", "path": str(p)} for p in dicoms])
    assert tuple(inputs["pixel_values"].shape) == (3, 3, 64, 64)


def test_dicom_patient_name_never_reaches_the_prompt(chat: MedGemmaChat) -> None:
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    patient = str(dataset.PatientName)
    assert patient
    engine = chat.backend
    assert isinstance(engine, TransformersEngine)
    message = HumanMessage(content=[{"type": "image", "path": path}, {"type": "text", "text": "?"}])
    prompt = engine._prompt(to_conversation([message]))
    assert "CT" in prompt  # the non-identifying modality is described
    for fragment in [patient, *patient.replace("^", " ").split()]:
        assert fragment not in prompt
    assert str(dataset.PatientID) not in prompt


def test_text_only_model_refuses_images(tiny_text: str, data_dir: Path) -> None:
    chat = MedGemmaChat(model=tiny_text, max_new_tokens=4)
    image = data_dir / "images" / "nih-cxr14" / "00000001_000.png"
    with pytest.raises(EngineError, match="text-only"):
        chat.invoke([HumanMessage(content=[{"type": "image", "path": str(image)}])])


def test_text_only_model_calls_tools(tiny_text: str) -> None:
    chat = MedGemmaChat(model=tiny_text, max_new_tokens=96)
    for reply in chat.bind_tools(TOOLS, tool_choice="any").batch(PROMPTS[:5]):
        assert reply.tool_calls and not reply.invalid_tool_calls
        for call in reply.tool_calls:
            assert_valid_call(call)


class ScriptedEngine:
    """An engine replying from a script, recording what it was asked."""

    name = "scripted"
    model_id = "scripted"
    supports_images = True

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.requests: list[GenerationRequest] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.requests.extend(requests)
        return [Completion(self.replies.pop(0), 10, 5) for _ in requests]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        self.requests.append(request)
        text = self.replies.pop(0)
        yield from (text[i : i + 3] for i in range(0, len(text), 3))


def scripted_chat(replies: Sequence[str], **kwargs: Any) -> tuple[MedGemmaChat, ScriptedEngine]:
    chat = MedGemmaChat(model="scripted", **kwargs)
    engine = ScriptedEngine(replies)
    chat._engine = engine
    return chat, engine


def test_unparseable_reply_gets_one_repair_round() -> None:
    fixed = json.dumps({"tool_calls": [{"name": "search_literature", "arguments": {"query": "x"}}]})
    chat, engine = scripted_chat(["I think we should search", fixed])
    reply = chat.bind_tools(TOOLS, tool_choice="any").invoke("find it")
    assert [c["name"] for c in reply.tool_calls] == ["search_literature"]
    assert len(engine.requests) == 2
    repair_turn = engine.requests[1].conversation.turns[-1].text
    assert "I think we should search" in repair_turn


def test_reply_broken_twice_lands_in_invalid_tool_calls() -> None:
    chat, engine = scripted_chat(["nonsense", "still nonsense"])
    reply = chat.bind_tools(TOOLS, tool_choice="any").invoke("find it")
    assert not reply.tool_calls
    assert reply.invalid_tool_calls and reply.invalid_tool_calls[0]["error"]
    assert len(engine.requests) == 2


def test_schema_violating_arguments_are_invalid_not_raised() -> None:
    bad = json.dumps(
        {"tool_calls": [{"name": "body_mass_index", "arguments": {"weight_kg": "heavy"}}]}
    )
    chat, _ = scripted_chat([bad, bad])
    reply = chat.bind_tools(TOOLS, tool_choice="any").invoke("bmi please")
    assert not reply.tool_calls
    assert reply.invalid_tool_calls[0]["name"] == "body_mass_index"


def test_thinking_goes_to_reasoning_not_content() -> None:
    chat, _ = scripted_chat(["<unused94>thought\nCheck renal dosing first.<unused95>Use 500 mg."])
    reply = chat.invoke("dose?")
    assert reply.content == "Use 500 mg."
    assert reply.additional_kwargs["reasoning"] == "Check renal dosing first."


def test_thinking_is_split_while_streaming() -> None:
    chat, _ = scripted_chat(["<unused94>thought\nWeigh the trials.<unused95>Aspirin helps."])
    chunks = list(chat.stream("?"))
    content = "".join(str(c.content) for c in chunks)
    reasoning = "".join(c.additional_kwargs.get("reasoning", "") for c in chunks)
    assert content == "Aspirin helps."
    assert reasoning == "Weigh the trials."


def test_thinking_setting_adds_the_instruction() -> None:
    chat, engine = scripted_chat(["ok"], thinking=True)
    chat.invoke([SystemMessage("Be brief."), HumanMessage("hi")])
    first = engine.requests[0].conversation.turns[0].text
    assert first.startswith("SYSTEM INSTRUCTION: think silently if needed.")
    assert "Be brief." in first


def test_tool_history_is_replayed_as_alternating_turns() -> None:
    call = {"name": "search_literature", "args": {"query": "statins"}, "id": "call_1"}
    chat, engine = scripted_chat(["Statins reduce events [1]."])
    chat.bind_tools(TOOLS).invoke(
        [
            SystemMessage("You are a careful assistant."),
            HumanMessage("Do statins help?"),
            AIMessage(content="", tool_calls=[call]),
            ToolMessage(
                "Trial X: 25% fewer events.", tool_call_id="call_1", name="search_literature"
            ),
        ]
    )
    turns = engine.requests[0].conversation.turns
    assert [t.role for t in turns] == ["user", "model", "user"]
    assert "You are a careful assistant." in turns[0].text
    assert "search_literature" in turns[1].text and "statins" in turns[1].text
    assert "Trial X: 25% fewer events." in turns[2].text
    assert "search_literature" in turns[2].text


def test_quantization_without_cuda_is_a_clear_error(tiny_text: str) -> None:
    chat = MedGemmaChat(model=tiny_text, quantization="4bit")
    with pytest.raises(ConfigurationError, match="4bit"):
        chat.invoke("hi")
