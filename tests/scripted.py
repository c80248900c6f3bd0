"""A scripted LangChain chat model for graph tests: a handler decides each reply from the
messages and the bound tools or structured-output schema, and every call is recorded."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr


@dataclass
class Call:
    """One recorded model call."""

    messages: list[BaseMessage]
    tools: list[str]
    schema: dict[str, Any] | None
    tool_choice: Any = None


Handler = Callable[[Call], AIMessage | dict[str, Any] | str]


class ScriptedChatModel(BaseChatModel):
    """Replies come from ``handler``; structured-output calls return the handler's dict as JSON."""

    model: str = "scripted"
    engine: str = "scripted"
    _handler: Handler = PrivateAttr()
    _calls: list[Call] = PrivateAttr(default_factory=list)

    def __init__(self, handler: Handler, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._handler = handler
        self._calls = []

    @property
    def calls(self) -> list[Call]:
        return self._calls

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = [t["function"]["name"] for t in kwargs.get("tools", [])]
        call = Call(list(messages), tools, kwargs.get("response_schema"), kwargs.get("tool_choice"))
        self._calls.append(call)
        reply = self._handler(call)
        if isinstance(reply, dict):
            reply = AIMessage(json.dumps(reply))
        elif isinstance(reply, str):
            reply = AIMessage(reply)
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:  # type: ignore[override]
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Runnable:  # type: ignore[override]
        return self.bind(response_schema=schema) | JsonOutputParser()


def prompt_text(call: Call) -> str:
    """All text the model was shown in one call."""
    return "\n".join(m.text for m in call.messages)
