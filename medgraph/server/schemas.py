"""Request bodies and response shapes of the OpenAI-compatible API."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from medgraph.graphs.state import Answer

MODEL_ID = "medgraph"
"""The one model id the API serves (``GET /v1/models``)."""


class TextPart(BaseModel):
    """``{"type": "text", "text": "..."}``."""

    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    """``{"url": "data:image/png;base64,..."}`` (``detail`` is accepted and ignored)."""

    url: str
    detail: str | None = None


class ImagePart(BaseModel):
    """``{"type": "image_url", "image_url": {"url": "data:..."}}``."""

    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(BaseModel):
    """One message of the conversation; content is text or a list of text and image parts."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text parts joined by blank lines."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n\n".join(part.text for part in self.content if isinstance(part, TextPart))

    def image_urls(self) -> list[str]:
        """The URLs of the message's image parts, in order."""
        if not isinstance(self.content, list):
            return []
        return [part.image_url.url for part in self.content if isinstance(part, ImagePart)]


StrictNumber = Annotated[float, Field(strict=True)]
"""A JSON number (an integer too), never a string or a boolean."""
TokenLimit = Annotated[int, Field(strict=True, ge=1)]


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. ``stream`` must be a boolean; the sampling options
    (``temperature``, ``top_p``, ``max_tokens``, ``max_completion_tokens``) are checked as
    OpenAI's API checks them, then ignored (the assistant's settings decide generation); ``n``
    must be 1. Other OpenAI fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = MODEL_ID
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = None
    user: str | None = Field(default=None, description="Conversation id if no header names one.")
    n: Annotated[int, Field(strict=True)] | None = None
    temperature: Annotated[StrictNumber, Field(ge=0, le=2)] | None = None
    top_p: Annotated[StrictNumber, Field(ge=0, le=1)] | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError(
                f"n={value} asks for {value} choices; this server returns one per request, so "
                "send n=1 or leave it out"
            )
        return value


def completion_id() -> str:
    """A fresh ``chatcmpl-...`` id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def answer_extras(answer: Answer, conversation_id: str | None) -> dict[str, Any]:
    """The medgraph fields added to a completion (and to the last stream chunk)."""
    data = answer.to_json_dict()
    citations = [
        {
            **shown,
            "chunk_id": citation.chunk_id,
            "reference": citation.reference,
            "provenance": citation.provenance,
        }
        for shown, citation in zip(data["citations"], answer.citations, strict=True)
    ]
    return {
        "citations": citations,
        "verification": data["verification"],
        "route": data["route"],
        "findings": data["findings"],
        "kind": data["kind"],
        "engine": data["engine"],
        "notice": data["notice"],
        "conversation_id": conversation_id,
    }


def completion_body(
    answer: Answer, *, request_id: str, conversation_id: str | None
) -> dict[str, Any]:
    """A ``chat.completion`` object carrying the answer and its citations."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "finish_reason": "stop",
            }
        ],
        **answer_extras(answer, conversation_id),
    }


def chunk_body(
    request_id: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a streamed answer."""
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        **extra,
    }


def error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> dict:
    """OpenAI's error shape: ``{"error": {"message", "type", "code", "param"}}``."""
    return {"error": {"message": message, "type": error_type, "code": code, "param": param}}
