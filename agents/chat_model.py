"""``MedGemmaChat``: MedGemma behind LangChain's ``BaseChatModel``, with tool calling.

MedGemma has no tool tokens; this class supplies them. Bound tools are rendered into the prompt,
the reply is constrained to the JSON decision schema where the engine can (llguidance locally,
guided JSON on servers), parsed robustly either way, validated against each tool's schema, and
given one repair round before a bad reply lands in ``invalid_tool_calls`` — never as an exception
inside a graph. Thinking blocks go to ``additional_kwargs["reasoning"]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableMap, RunnablePassthrough
from langchain_core.utils import secret_from_env
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from medgraph.agents.config import DEFAULT_IMAGE_MODEL, ModelSettings
from medgraph.agents.conversation import Conversation, TextPart, Turn, to_conversation
from medgraph.agents.engines.base import Completion, Engine, GenerationRequest
from medgraph.agents.protocol import (
    DEFAULT_CHARS_PER_TOKEN,
    THINKING_CLOSE,
    THINKING_OPEN,
    ParsedReply,
    ToolSpec,
    decision_schema,
    decision_token_budget,
    normalise_tool_choice,
    parse_reply,
    render_tools_prompt,
    repair_prompt,
    split_thinking,
    structured_output_schema,
    tool_specs,
)
from medgraph.errors import ConfigurationError
from medgraph.loading import MODEL_LOAD_LOCK

THINKING_INSTRUCTION = "SYSTEM INSTRUCTION: think silently if needed."


def _structured_prompt(schema: Mapping[str, Any]) -> str:
    return (
        "Reply with one JSON object and nothing else. It must match this JSON schema:\n"
        f"{json.dumps(schema, ensure_ascii=False)}"
    )


@dataclass
class _Plan:
    """How one call is asked and how its reply is read."""

    request: GenerationRequest
    specs: list[ToolSpec]
    tool_choice: str
    structured: bool


class MedGemmaChat(BaseChatModel):
    """A MedGemma checkpoint as a LangChain chat model that can call tools.

    Example:
        >>> chat = MedGemmaChat(model="google/medgemma-4b-it")            # local weights
        >>> chat = MedGemmaChat(model="medgemma", engine="openai",
        ...                     base_url="http://localhost:8000/v1")     # vLLM server
        >>> chat.bind_tools([search_literature], tool_choice="any").invoke("...")
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    model: str = Field(default=DEFAULT_IMAGE_MODEL, alias="model_name")
    """Hub id (``google/medgemma-4b-it``), local folder, or the server's model name."""
    engine: Literal["transformers", "openai"] = "transformers"
    base_url: str | None = Field(
        default_factory=lambda: os.environ.get("MEDGRAPH_MODELS__BASE_URL") or None
    )
    api_key: SecretStr | None = Field(
        default_factory=lambda: secret_from_env("MEDGRAPH_MODELS__API_KEY", default=None)()
    )
    dtype: str = "auto"
    device_map: str = "auto"
    quantization: Literal["none", "4bit", "8bit"] = "none"
    max_new_tokens: int = Field(default=512, ge=1, alias="max_tokens")
    temperature: float = Field(default=0.0, ge=0.0)
    """0 means greedy decoding, as in Google's MedGemma notebooks."""
    thinking: bool = False
    timeout: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=0, ge=0)
    """Retries of a failed server request (engine "openai")."""
    streaming: bool = False
    """Accepted for LangChain compatibility; ``stream()`` always streams."""
    max_tool_calls: int = Field(default=4, ge=1)
    max_decision_tokens: int = Field(default=128, ge=8)
    """Token budget of a required tool decision (``any`` or a named tool); the grammar's closing
    mode ends it as valid JSON within it. ``auto`` may answer in prose instead, up to
    ``max_new_tokens``."""
    repair: bool = True
    """Give an unparseable tool reply one repair round before reporting it invalid."""
    stop: list[str] | None = None

    _engine: Engine | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(
        cls, settings: ModelSettings, role: Literal["image", "text"] = "text", **overrides: Any
    ) -> MedGemmaChat:
        """The chat model for ``role`` as the settings describe it."""
        if settings.engine == "extractive":
            raise ConfigurationError(
                "the extractive engine has no chat model; choose engine 'transformers' or 'openai'"
            )
        params: dict[str, Any] = {
            "model": settings.image_model if role == "image" else settings.text_model,
            "engine": settings.engine,
            "base_url": settings.base_url,
            "api_key": settings.api_key,
            "dtype": settings.dtype,
            "device_map": settings.device_map,
            "quantization": settings.quantization,
            "max_new_tokens": settings.max_new_tokens,
            "thinking": settings.thinking,
            "timeout": settings.request_timeout,
        }
        params.update(overrides)
        return cls(**params)

    # -- LangChain plumbing -------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "medgemma"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "engine": self.engine,
            "base_url": self.base_url,
            "dtype": self.dtype,
            "quantization": self.quantization,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="medgemma",
            ls_model_name=str(kwargs.get("model", self.model)),
            ls_model_type="chat",
            ls_temperature=self.temperature,
            ls_max_tokens=self.max_new_tokens,
        )
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    @property
    def backend(self) -> Engine:
        """The inference engine, created (and weights loaded) on first use."""
        if self._engine is None and self.engine == "transformers":
            # Graph branches may build engines in parallel threads: import and load under the
            # process-wide lock (see medgraph.loading).
            with MODEL_LOAD_LOCK:
                if self._engine is None:
                    from medgraph.agents.engines.transformers_engine import TransformersEngine

                    self._engine = TransformersEngine(
                        self.model,
                        dtype=self.dtype,
                        device_map=self.device_map,
                        quantization=self.quantization,
                        temperature=self.temperature,
                    )
        if self._engine is None:
            from medgraph.agents.engines.openai_engine import OpenAIEngine

            self._engine = OpenAIEngine(
                self.model,
                base_url=self.base_url,
                api_key=self.api_key.get_secret_value() if self.api_key else None,
                timeout=self.timeout,
                temperature=self.temperature,
                max_retries=self.max_retries,
            )
        return self._engine

    @property
    def runs_on_cpu(self) -> bool:
        """Whether this model decodes on a CPU (transformers engine, no CUDA device)."""
        if self.engine != "transformers":
            return False
        import torch

        return not torch.cuda.is_available()

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; ``tool_choice`` is "auto", "any"/"required", "none" or a tool's name.

        ``brief_tools=True`` renders each tool in two lines instead of its full schema (see
        :func:`~medgraph.agents.protocol.render_tools_prompt`).
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        # Only the names matter for the choice; schemas are checked when a call is made.
        named = [ToolSpec(t["function"]["name"], "", {}) for t in formatted]
        choice = normalise_tool_choice(tool_choice, named)
        return self.bind(tools=formatted, tool_choice=choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Replies constrained to ``schema`` (pydantic model or JSON schema) and parsed into it.

        Other keyword arguments are bound to every call: ``max_new_tokens`` (this output's token
        budget) and ``deadline`` (``time.time()`` by which generation must end).
        """
        if schema is None:
            raise ValueError(
                "with_structured_output needs a schema (pydantic model or JSON schema)"
            )
        json_schema = structured_output_schema(schema)  # type: ignore[arg-type]
        limits = {k: v for k, v in kwargs.items() if k in ("max_new_tokens", "deadline")}
        llm = self.bind(
            response_schema=json_schema,
            ls_structured_output_format={"kwargs": {"method": "json_schema"}, "schema": schema},
            **limits,
        )
        parser: Runnable[Any, Any]
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            parser = PydanticOutputParser(pydantic_object=schema)
        else:
            parser = JsonOutputParser()
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        ).with_fallbacks(
            [RunnablePassthrough.assign(parsed=lambda _: None)], exception_key="parsing_error"
        )
        return RunnableMap(raw=llm) | parsed

    # -- request planning and reply reading ---------------------------------------------------

    def _plan(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> _Plan:
        specs = tool_specs(kwargs.get("tools") or [])
        choice = normalise_tool_choice(kwargs.get("tool_choice"), specs) if specs else "none"
        response_schema: dict[str, Any] | None = kwargs.get("response_schema")
        suffix = ""
        schema: dict[str, Any] | None = None
        if response_schema is not None:
            suffix, schema = _structured_prompt(response_schema), response_schema
        elif specs and choice != "none":
            suffix = render_tools_prompt(specs, choice, brief=bool(kwargs.get("brief_tools")))
            schema = decision_schema(specs, choice, max_calls=self.max_tool_calls)
        conversation = to_conversation(
            messages,
            system_prefix=THINKING_INSTRUCTION if self.thinking else "",
            system_suffix=suffix,
        )
        budget = int(kwargs.get("max_new_tokens", self.max_new_tokens))
        if response_schema is None and schema is not None:
            # A tool decision needs no more tokens than its schema allows, however the model
            # behaves. (Structured outputs keep max_new_tokens: their schemas are the caller's.)
            if choice != "auto":
                budget = min(budget, self.max_decision_tokens)
            budget = decision_token_budget(
                schema, ceiling=budget, chars_per_token=self._chars_per_token(schema)
            )
        deadline = kwargs.get("deadline")
        request = GenerationRequest(
            conversation=conversation,
            max_new_tokens=budget,
            json_schema=schema,
            stop=tuple(stop or self.stop or ()),
            deadline=float(deadline) if deadline is not None else None,
        )
        return _Plan(
            request=request, specs=specs, tool_choice=choice, structured=response_schema is not None
        )

    def _chars_per_token(self, schema: dict[str, Any] | None) -> float:
        """The engine's measure of its tokenizer on decision JSON (loads it when constrained)."""
        if schema is None:
            return DEFAULT_CHARS_PER_TOKEN
        return float(getattr(self.backend, "json_chars_per_token", DEFAULT_CHARS_PER_TOKEN))

    def _read(self, plan: _Plan, text: str) -> ParsedReply:
        if plan.structured or not plan.specs or plan.tool_choice == "none":
            content, reasoning = split_thinking(text)
            return ParsedReply(
                content=content,
                tool_calls=[],
                invalid_tool_calls=[],
                reasoning=reasoning,
                error=None,
            )
        return parse_reply(text, plan.specs, plan.tool_choice, max_calls=self.max_tool_calls)

    def _repair_request(self, plan: _Plan, reply: str, error: str) -> GenerationRequest:
        turns = [Turn(t.role, list(t.parts)) for t in plan.request.conversation.turns]
        turns.append(Turn("model", [TextPart(reply)]))
        turns.append(
            Turn("user", [TextPart(repair_prompt(reply, error, plan.specs, plan.tool_choice))])
        )
        return GenerationRequest(
            conversation=Conversation(turns),
            max_new_tokens=plan.request.max_new_tokens,
            json_schema=plan.request.json_schema,
            stop=plan.request.stop,
            deadline=plan.request.deadline,
        )

    def _run(self, plans: Sequence[_Plan]) -> list[tuple[ParsedReply, str, Completion]]:
        """Generate all plans in one engine call, then one batched repair round where needed."""
        completions = self.backend.generate([p.request for p in plans])
        results = [
            (self._read(p, c.text), c.text, c) for p, c in zip(plans, completions, strict=True)
        ]
        # No repair round once a request's deadline has passed: the reply stands as it is.
        broken = [
            i
            for i, (parsed, _, _) in enumerate(results)
            if parsed.error and self.repair and plans[i].request.seconds_left() != 0.0
        ]
        if broken:
            retries = self.backend.generate(
                [
                    self._repair_request(plans[i], results[i][1], results[i][0].error or "")
                    for i in broken
                ]
            )
            for index, completion in zip(broken, retries, strict=True):
                first = results[index][2]
                merged = Completion(
                    completion.text,
                    first.prompt_tokens + completion.prompt_tokens,
                    first.completion_tokens + completion.completion_tokens,
                )
                results[index] = (
                    self._read(plans[index], completion.text),
                    completion.text,
                    merged,
                )
        return results

    def _message(self, parsed: ParsedReply, raw: str, completion: Completion) -> AIMessage:
        invalid = list(parsed.invalid_tool_calls)
        if parsed.error and not parsed.tool_calls and not invalid:
            invalid.append(
                {
                    "type": "invalid_tool_call",
                    "name": None,
                    "args": raw,
                    "id": None,
                    "error": parsed.error,
                }
            )
        additional: dict[str, Any] = {}
        if parsed.reasoning:
            additional["reasoning"] = parsed.reasoning
        return AIMessage(
            content=parsed.content,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=invalid,
            additional_kwargs=additional,
            usage_metadata={
                "input_tokens": completion.prompt_tokens,
                "output_tokens": completion.completion_tokens,
                "total_tokens": completion.prompt_tokens + completion.completion_tokens,
            },
            response_metadata={"model_name": self.model, "engine": self.engine},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        plan = self._plan(messages, stop, kwargs)
        parsed, raw, completion = self._run([plan])[0]
        return ChatResult(
            generations=[ChatGeneration(message=self._message(parsed, raw, completion))]
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        plan = self._plan(messages, stop, kwargs)
        if plan.request.json_schema is not None:
            # A decision or a structured reply is only meaningful whole: one chunk.
            parsed, raw, completion = self._run([plan])[0]
            message = self._message(parsed, raw, completion)
            chunk = AIMessageChunk(
                content=message.content,
                additional_kwargs=message.additional_kwargs,
                tool_call_chunks=[
                    {
                        "type": "tool_call_chunk",
                        "name": call["name"],
                        "args": json.dumps(call["args"], ensure_ascii=False),
                        "id": call["id"],
                        "index": index,
                    }
                    for index, call in enumerate(message.tool_calls)
                ],
                usage_metadata=message.usage_metadata,
                response_metadata=message.response_metadata,
            )
            if message.invalid_tool_calls:
                chunk.invalid_tool_calls = message.invalid_tool_calls
            yield ChatGenerationChunk(message=chunk)
            return
        for content, reasoning in _split_thinking_stream(self.backend.stream(plan.request)):
            chunk = AIMessageChunk(
                content=content,
                additional_kwargs={"reasoning": reasoning} if reasoning else {},
            )
            if run_manager and content:
                run_manager.on_llm_new_token(content, chunk=ChatGenerationChunk(message=chunk))
            yield ChatGenerationChunk(message=chunk)
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                response_metadata={"model_name": self.model, "engine": self.engine},
                chunk_position="last",
            )
        )

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:  # type: ignore[override]
        """Answer many inputs with one padded ``generate`` call on the transformers engine."""
        if self.engine != "transformers" or len(inputs) < 2 or return_exceptions:
            return super().batch(  # type: ignore[return-value]
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
        stop = kwargs.pop("stop", None)
        plans = [self._plan(self._convert_input(i).to_messages(), stop, kwargs) for i in inputs]
        return [self._message(p, r, c) for p, r, c in self._run(plans)]


def _split_thinking_stream(pieces: Iterator[str]) -> Iterator[tuple[str, str | None]]:
    """Route streamed text inside ``<unused94>...<unused95>`` to reasoning, the rest to content."""
    buffer = ""
    thinking = False
    for piece in pieces:
        buffer += piece
        while buffer:
            if thinking:
                end = buffer.find(THINKING_CLOSE)
                if end == -1:
                    break
                thought = buffer[:end].removeprefix("thought").strip()
                yield "", thought
                buffer = buffer[end + len(THINKING_CLOSE) :].lstrip()
                thinking = False
                continue
            start = buffer.find(THINKING_OPEN)
            if start != -1:
                if start:
                    yield buffer[:start], None
                buffer = buffer[start + len(THINKING_OPEN) :]
                thinking = True
                continue
            keep = _partial_marker_length(buffer)
            if len(buffer) > keep:
                yield buffer[: len(buffer) - keep], None
                buffer = buffer[len(buffer) - keep :]
            break
    if buffer:
        if thinking:
            yield "", buffer.removeprefix("thought").strip()
        else:
            yield buffer, None


def _partial_marker_length(text: str) -> int:
    """Length of the longest suffix of ``text`` that could begin the thinking marker."""
    for size in range(min(len(text), len(THINKING_OPEN) - 1), 0, -1):
        if THINKING_OPEN.startswith(text[-size:]):
            return size
    return 0
