"""``/v1/chat/completions`` and ``/v1/models``: the assistant behind OpenAI's chat API.

The server is stateful: a conversation id (header ``X-Conversation-Id``, else the ``user`` field)
names a checkpointer thread, namespaced by API key. The last message must be the user's question;
its image parts (data URLs) are attached. Earlier messages in the request are validated but not
replayed: the thread already holds the conversation, and a client cannot rewrite it. Without a
conversation id every request starts a new thread, whose id is returned (``conversation_id``
field and ``X-Conversation-Id`` header) for the next turn.

With ``stream: true`` the answer arrives as ``chat.completion.chunk`` server-sent events ending with
``data: [DONE]``. Progress (triage, retrieval, verification) arrives first as SSE comment lines
(``: progress {...}``), which OpenAI clients skip; the content deltas carry the verified answer
(with its ``[n]`` markers) once verification has passed, and the last chunk carries
``citations``, ``verification`` and ``route``. Citations are one per cited record (``[n]`` numbers
records, not passages); each lists its cited ``passages`` (chunk id, quote, span).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from medgraph.assistant import check_question
from medgraph.errors import MedgraphError
from medgraph.graphs.state import Answer
from medgraph.server.errors import ApiError, api_error_for
from medgraph.server.limits import save_data_url_image
from medgraph.server.schemas import (
    MODEL_ID,
    ChatCompletionRequest,
    answer_extras,
    chunk_body,
    completion_body,
    completion_id,
    error_body,
)
from medgraph.server.service import ChatService

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1")
_STARTED = int(time.time())
_WORDS_PER_DELTA = 6
_PIECE = re.compile(r"\s*\S+|\s+$")


def service_of(request: Request) -> ChatService:
    """The app's :class:`ChatService`."""
    service: ChatService = request.app.state.chat_service
    return service


def api_key_of(request: Request) -> str | None:
    """The bearer key the auth middleware accepted (None without auth)."""
    return getattr(request.state, "api_key", None)


def text_deltas(text: str, words: int = _WORDS_PER_DELTA) -> list[str]:
    """``text`` cut into pieces of a few words whose concatenation is exactly ``text``."""
    pieces = _PIECE.findall(text)
    return ["".join(pieces[i : i + words]) for i in range(0, len(pieces), words)]


def _sse(data: dict[str, Any] | str) -> str:
    # ASCII JSON: any text (even a lone surrogate from an ingested record) encodes as UTF-8.
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"data: {payload}\n\n"


def _progress_comment(data: Any) -> str | None:
    if not isinstance(data, dict) or "event" not in data:
        return None
    return f": progress {json.dumps(data, default=str)}\n\n"


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """OpenAI's model list: the one model ``medgraph`` and the engine behind it."""
    service = service_of(request)
    models = service.settings.models
    extractive = service.engine == "extractive"
    return {
        "object": "list",
        "data": [
            {
                "id": MODEL_ID,
                "object": "model",
                "created": _STARTED,
                "owned_by": "medgraph",
                "engine": service.engine,
                "text_model": None if extractive else models.text_model,
                "image_model": None if extractive else models.image_model,
            }
        ],
    }


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    request: Request,
    body: ChatCompletionRequest,
    x_conversation_id: Annotated[str | None, Header()] = None,
) -> JSONResponse | StreamingResponse:
    """Answer the last user message in the conversation's thread (see the module docstring)."""
    service = service_of(request)
    limits = service.settings.server
    if body.model != MODEL_ID:
        raise ApiError(
            404,
            f"model {body.model!r} does not exist; this server serves {MODEL_ID!r}",
            "model_not_found",
            param="model",
        )
    last = body.messages[-1]
    if last.role != "user":
        raise ApiError(
            400,
            f"the last message must be the user's question (role 'user'), not {last.role!r}",
            "invalid_last_message",
            param="messages",
        )
    if not last.text().strip():
        raise ApiError(
            400,
            "the last user message has no text; ask a question",
            "empty_question",
            param="messages",
        )
    total = sum(len(m.text().encode("utf-8", "surrogatepass")) for m in body.messages)
    if total > limits.max_message_bytes:
        raise ApiError(
            400,
            f"the messages hold {total} bytes of text, over the server's limit of "
            f"{limits.max_message_bytes}; send the question alone (the server keeps the "
            "conversation) or raise server.max_message_bytes",
            "messages_too_large",
            param="messages",
        )
    question = check_question(last.text(), service.settings.graph.max_question_chars)
    urls = last.image_urls()
    if len(urls) > limits.max_images:
        raise ApiError(
            400,
            f"{len(urls)} images attached; the server accepts at most {limits.max_images}",
            "too_many_images",
            param="messages",
        )
    conversation_id = x_conversation_id or body.user or uuid.uuid4().hex
    thread_id = service.api_thread_id(conversation_id, api_key_of(request))

    folder = service.scratch.new_folder("medgraph-request-")
    handed_off = False  # once streaming starts, the stream removes the folder
    try:
        images = [
            await asyncio.to_thread(
                save_data_url_image, url, folder, number, max_pixels=limits.max_image_pixels
            )
            for number, url in enumerate(urls, start=1)
        ]
        request_id = completion_id()
        headers = {"X-Conversation-Id": conversation_id}
        if not body.stream:
            answer = await service.ask(question, images, thread_id, api_key_of(request))
            return JSONResponse(
                completion_body(answer, request_id=request_id, conversation_id=conversation_id),
                headers=headers,
            )
        items = service.stream(question, images, thread_id, api_key_of(request))
        # The first item comes after the slot is taken and the question and images are checked,
        # so a full gate or a bad input is still an HTTP error rather than an in-stream one.
        first = await anext(items)
        handed_off = True
        return StreamingResponse(
            _stream_events(items, first, request_id, conversation_id, folder),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            # Also when the client leaves before the stream starts (its generator never runs).
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )
    finally:
        if not handed_off:
            shutil.rmtree(folder, ignore_errors=True)


async def _stream_events(
    items: AsyncIterator[tuple[str, Any]],
    first: tuple[str, Any],
    request_id: str,
    conversation_id: str,
    folder: Path,
) -> AsyncIterator[str]:
    created = int(time.time())
    answer: Answer | None = None
    try:
        yield _sse(chunk_body(request_id, created, {"role": "assistant", "content": ""}))
        item: tuple[str, Any] | None = first
        while item is not None:
            mode, data = item
            if mode == "custom":
                comment = _progress_comment(data)
                if comment:
                    yield comment
            elif mode == "answer":
                answer = data
            item = await anext(items, None)
        if answer is None:
            raise RuntimeError("the assistant stream ended without an answer")
        for piece in text_deltas(answer.text):
            yield _sse(chunk_body(request_id, created, {"content": piece}))
        yield _sse(
            chunk_body(request_id, created, {}, "stop", **answer_extras(answer, conversation_id))
        )
    except MedgraphError as error:
        api_error = api_error_for(error)
        yield _sse(error_body(api_error.message, "invalid_request_error", api_error.code))
    except Exception:  # the stream has started: end it with an error event, never a cut
        logger.exception("chat stream %s failed", request_id)
        yield _sse(
            error_body("the server failed while answering; see its log", "server_error", "internal")
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # first: a cancelled stream may not get past
        await items.aclose()  # type: ignore[attr-defined]
    yield _sse("[DONE]")
