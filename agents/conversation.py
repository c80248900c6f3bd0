"""Gemma-shaped conversations: what every engine receives.

Gemma chat templates know only ``user`` and ``model`` turns that alternate. :func:`to_conversation`
turns any LangChain message list into that shape: the system text is folded into the first user
turn, AI tool calls are replayed in the JSON format the model is asked to produce, tool results come
back as a user turn naming the tool, and consecutive turns of one role are merged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from medgraph.agents.images import LoadedImage, is_image_block, load_image_block
from medgraph.agents.protocol import render_tool_calls, render_tool_result

Role = Literal["user", "model"]


@dataclass
class TextPart:
    """A run of text inside a turn."""

    text: str


@dataclass
class ImagePart:
    """A decoded image inside a turn (never a path the model chose)."""

    image: LoadedImage


Part = TextPart | ImagePart


@dataclass
class Turn:
    """One turn of a Gemma conversation."""

    role: Role
    parts: list[Part] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The turn's text parts joined (images left out)."""
        return "\n\n".join(p.text for p in self.parts if isinstance(p, TextPart))


@dataclass
class Conversation:
    """Alternating user/model turns, starting with a user turn."""

    turns: list[Turn]

    @property
    def images(self) -> list[LoadedImage]:
        """Every image in the conversation, in order."""
        return [p.image for t in self.turns for p in t.parts if isinstance(p, ImagePart)]

    def with_user_text(self, text: str) -> Conversation:
        """A copy with ``text`` appended as a (merged) user turn."""
        turns = [Turn(t.role, list(t.parts)) for t in self.turns]
        _append(turns, "user", [TextPart(text)])
        return Conversation(turns)

    def to_template_messages(self) -> list[dict[str, Any]]:
        """The Hugging Face chat-template form: ``[{"role", "content": [{"type": ...}]}]``.

        An image with DICOM metadata is followed by its one-line description (modality, body
        part, view); nothing else from the file ever reaches the prompt.
        """
        messages: list[dict[str, Any]] = []
        for turn in self.turns:
            content: list[dict[str, Any]] = []
            for part in turn.parts:
                if isinstance(part, TextPart):
                    content.append({"type": "text", "text": part.text})
                else:
                    content.append({"type": "image"})
                    description = part.image.describe()
                    if description:
                        content.append({"type": "text", "text": f"(Image: {description}.)"})
            role = "assistant" if turn.role == "model" else "user"
            messages.append({"role": role, "content": content})
        return messages


def _content_parts(content: str | list[Any]) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    parts: list[Part] = []
    for block in content:
        if isinstance(block, str):
            parts.append(TextPart(block))
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(TextPart(str(block.get("text", ""))))
        elif isinstance(block, dict) and is_image_block(block):
            parts.append(ImagePart(load_image_block(block)))
    return parts


def _append(turns: list[Turn], role: Role, parts: list[Part]) -> None:
    if not parts:
        return
    if turns and turns[-1].role == role:
        turns[-1].parts.extend(parts)
    else:
        turns.append(Turn(role, parts))


def to_conversation(
    messages: Sequence[BaseMessage], *, system_suffix: str = "", system_prefix: str = ""
) -> Conversation:
    """Convert LangChain messages into alternating Gemma turns.

    ``system_prefix`` and ``system_suffix`` (e.g. a thinking instruction, the rendered tool list)
    wrap the system text before it is folded into the first user turn.
    """
    system_texts: list[str] = [system_prefix] if system_prefix else []
    turns: list[Turn] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            system_texts.append(message.text)
        elif isinstance(message, HumanMessage):
            _append(turns, "user", _content_parts(message.content))
        elif isinstance(message, AIMessage):
            parts = _content_parts(message.content)
            if message.tool_calls:
                parts.append(TextPart(render_tool_calls(message.tool_calls)))
            _append(turns, "model", parts or [TextPart("")])
        elif isinstance(message, ToolMessage):
            text = render_tool_result(message.name or "tool", message.content, message.tool_call_id)
            _append(turns, "user", [TextPart(text)])
        elif isinstance(message, ChatMessage):
            role: Role = "model" if message.role in ("assistant", "model", "ai") else "user"
            _append(turns, role, _content_parts(message.content))
        else:
            raise TypeError(f"unsupported message type {type(message).__name__}")
    if system_suffix:
        system_texts.append(system_suffix)
    system = "\n\n".join(t for t in system_texts if t.strip())
    if not turns or turns[0].role != "user":
        turns.insert(0, Turn("user", []))
    if system:
        turns[0].parts.insert(0, TextPart(system))
    return Conversation(turns)
