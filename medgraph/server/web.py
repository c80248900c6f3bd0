"""The web chat page of ``medgraph serve``: a Gradio chat mounted in the FastAPI app.

    >>> app = FastAPI()
    >>> ...  # register the API routes first: a page mounted at "/" answers every later path
    >>> mount_chat_ui(app, service)

The page takes a question with PNG, JPEG or DICOM attachments, streams the assistant's progress
(safety triage, reading images, searching the literature, verifying) as a collapsible step list,
then shows the cited answer with a numbered, linked reference list whose quoted passages open on
demand. The not-for-clinical-use notice stays above the chat. Every browser session (every tab)
gets its own conversation thread; "clear" starts a new one.

Files: the page only ever opens files that came through Gradio's own upload flow (they live in
Gradio's upload folder). A client that names any other server path in a request is refused by
Gradio's upload-folder check (switched on here: a mounted app skips it otherwise) before anything
is copied, and again by :func:`check_uploads`. With API keys configured the whole page (uploads,
the queue, ``/gradio_api/file=``) sits behind Gradio's login form, whose password is an API key.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gradio as gr
from fastapi import FastAPI
from gradio.utils import get_upload_folder

from medgraph.agents.images import load_image
from medgraph.errors import ImageLoadError, MedgraphError
from medgraph.graphs.safety import NOT_FOR_CLINICAL_USE
from medgraph.graphs.state import Answer
from medgraph.server.web_format import (
    escape_markdown,
    node_labels,
    progress_label,
    render_answer,
    render_progress,
)

log = logging.getLogger(__name__)

IMAGE_FILE_TYPES = [".png", ".jpg", ".jpeg", ".dcm", ".dicom"]
DRAFT_NODES = frozenset({"reason", "write"})
"""Nodes whose model tokens are shown as an (unverified) draft while they stream."""

PAGE_CSS = """
#medgraph-notice { border-left: 4px solid #b45309; background: #fffbeb; color: #78350f;
  padding: 0.5rem 0.75rem; border-radius: 4px; }
#medgraph-notice p { margin: 0; }
.medgraph-citations li { margin-bottom: 0.25rem; }
.medgraph-quote summary { cursor: pointer; font-size: 0.9em; }
"""


class ChatStreamer(Protocol):
    """What the page needs from the server: the assistant's stream for one question."""

    def stream(
        self, question: str, images: list[Path], thread_id: str
    ) -> AsyncIterator[tuple[str, Any]]:
        """Yield ``(mode, data)`` items as ``Assistant.stream`` does, ending with the answer."""
        ...


@dataclass(frozen=True)
class UploadLimits:
    """How many images one question may carry and how large each may be."""

    max_images: int = 4
    max_image_pixels: int = 25_000_000
    max_file_bytes: int = 20 * 1024 * 1024

    @classmethod
    def of(cls, service: object) -> UploadLimits:
        """The limits of ``service.settings.server`` where it has them, else the defaults."""
        server = getattr(getattr(service, "settings", None), "server", None)
        defaults = cls()
        return cls(
            max_images=getattr(server, "max_images", defaults.max_images),
            max_image_pixels=getattr(server, "max_image_pixels", defaults.max_image_pixels),
            max_file_bytes=getattr(server, "max_upload_bytes", defaults.max_file_bytes),
        )


class TooManyImagesError(MedgraphError):
    """A web question came with more images than the server accepts."""


class NotAnUploadError(MedgraphError):
    """A web question named a file that did not come through the page's upload flow."""


def upload_folder() -> Path:
    """Gradio's upload folder (``GRADIO_TEMP_DIR``, else ``<tmp>/gradio``), resolved."""
    return Path(get_upload_folder()).resolve()


def check_uploads(files: list[Path], limits: UploadLimits) -> None:
    """Raise a MedgraphError naming the problem unless every upload is an acceptable image.

    A file outside Gradio's upload folder is refused unread (the page never opens a path a
    client sent). Each file is decoded once here (pixel count checked from the header first), so
    an oversized or unreadable upload is refused before it takes a generation slot. Messages name
    images by their number, never by a server path.
    """
    if len(files) > limits.max_images:
        raise TooManyImagesError(
            f"{len(files)} images attached; this server accepts at most {limits.max_images} "
            "per question"
        )
    folder = upload_folder()
    for number, path in enumerate(files, start=1):
        if not path.resolve().is_relative_to(folder):
            raise NotAnUploadError(
                f"image {number} was not uploaded through this page; attach it with the clip button"
            )
        try:
            load_image(path.read_bytes(), max_pixels=limits.max_image_pixels)
        except ImageLoadError as error:
            raise ImageLoadError(f"image {number}: {error}") from error


def new_thread_id() -> str:
    """A fresh conversation thread id for one browser session (the ``web:`` namespace)."""
    return f"web:{uuid.uuid4().hex}"


def _file_path(item: object) -> Path | None:
    if isinstance(item, str | Path):
        return Path(item)
    if isinstance(item, Mapping) and item.get("path"):
        return Path(str(item["path"]))
    path = getattr(item, "path", None)
    return Path(path) if path else None


class TurnView:
    """What one assistant turn shows: the steps so far, a streaming draft, then the answer."""

    def __init__(self) -> None:
        """Start an empty turn (the clock runs from here)."""
        self.steps: list[str] = []
        self.draft = ""
        self.answer: Answer | None = None
        self.error: str | None = None
        self.started = time.perf_counter()
        self.finished: float | None = None

    def add(self, mode: str, data: Any) -> bool:
        """Take one stream item; True when the page should redraw."""
        if mode == "custom" and isinstance(data, Mapping):
            self.steps.append(progress_label(data))
            return True
        if mode == "updates":
            labels = node_labels(data)
            self.steps.extend(labels)
            return bool(labels)
        if mode == "messages" and isinstance(data, tuple) and len(data) == 2:
            chunk, metadata = data
            node = metadata.get("langgraph_node") if isinstance(metadata, Mapping) else None
            text = getattr(chunk, "text", "")
            if node in DRAFT_NODES and isinstance(text, str) and text:
                self.draft += text
                return True
            return False
        if mode == "answer" and isinstance(data, Answer):
            self.answer = data
            return True
        return False

    def fail(self, message: str) -> None:
        """End the turn with an error shown in place of the answer."""
        self.error = message
        self.finish()

    def finish(self) -> None:
        """Stop the clock: the step list closes and shows its duration."""
        if self.finished is None:
            self.finished = time.perf_counter()

    def messages(self) -> list[gr.ChatMessage]:
        """The assistant messages of this turn, for the chatbot."""
        done = self.finished is not None
        elapsed = (self.finished or time.perf_counter()) - self.started
        steps = self.steps or ["Starting"]
        title = f"Steps ({len(self.steps)})" if done else f"{steps[-1]}…"
        # Thought titles are rendered as Markdown too: escape the query they may quote.
        progress: dict[str, Any] = {
            "title": escape_markdown(title),
            "status": "done" if done else "pending",
        }
        if done:
            progress["duration"] = round(elapsed, 1)
        shown = [gr.ChatMessage(content=render_progress(steps), metadata=progress)]  # type: ignore[arg-type]
        if self.draft and self.answer is None:
            shown.append(
                gr.ChatMessage(
                    content=escape_markdown(self.draft),
                    metadata={"title": "Draft (not yet verified)", "status": "pending"},
                )
            )
        if self.answer is not None:
            shown.append(gr.ChatMessage(content=render_answer(self.answer)))
        elif self.error is not None:
            shown.append(gr.ChatMessage(content=f"**Could not answer:** {self.error}"))
        return shown


def chat_responder(
    service: ChatStreamer, limits: UploadLimits | None = None
) -> Callable[
    [Mapping[str, Any], list[Any], str | None], AsyncIterator[tuple[list[gr.ChatMessage], str]]
]:
    """The chat function: streams one turn's messages and keeps the session's thread id."""

    async def respond(
        message: Mapping[str, Any], history: list[Any], thread_id: str | None
    ) -> AsyncIterator[tuple[list[gr.ChatMessage], str]]:
        thread = thread_id or new_thread_id()
        question = str(message.get("text") or "").strip()
        files = [p for p in map(_file_path, message.get("files") or []) if p is not None]
        turn = TurnView()
        yield turn.messages(), thread
        try:
            # Decoding a large image takes a while: keep it off the event loop.
            await asyncio.to_thread(check_uploads, files, limits or UploadLimits.of(service))
            async for mode, data in service.stream(question, files, thread):
                if turn.add(mode, data):
                    yield turn.messages(), thread
        except MedgraphError as error:
            turn.fail(escape_markdown(str(error)))
        except Exception:  # the page must answer even when the server fails
            log.exception("web chat turn failed (thread %s)", thread)
            turn.fail("the server failed while answering; see its log. Please try again.")
        else:
            if turn.answer is None:
                turn.fail("the assistant returned no answer. Please try again.")
            turn.finish()
        yield turn.messages(), thread

    return respond


def _engine_of(service: object) -> str | None:
    engine = getattr(getattr(service, "assistant", None), "engine", None)
    return engine if isinstance(engine, str) else None


def build_chat_ui(
    service: ChatStreamer,
    *,
    concurrency_limit: int | None = None,
    limits: UploadLimits | None = None,
) -> gr.Blocks:
    """The chat page as Gradio Blocks (not yet mounted)."""
    engine = _engine_of(service)
    subtitle = "Answers grounded in the indexed literature; every claim cites its source."
    if engine:
        subtitle += f" Engine: {escape_markdown(engine)}."
    with gr.Blocks(
        title="medgraph chat", fill_height=True, analytics_enabled=False, delete_cache=(900, 3600)
    ) as blocks:
        gr.Markdown(f"## medgraph\n{subtitle}", elem_id="medgraph-header")
        gr.Markdown(escape_markdown(NOT_FOR_CLINICAL_USE), elem_id="medgraph-notice")
        thread = gr.State(None)
        chatbot = gr.Chatbot(
            elem_id="medgraph-chat",
            show_label=False,
            scale=1,
            height="60vh",
            latex_delimiters=[],
            sanitize_html=True,
            render_markdown=True,
            feedback_options=None,
            buttons=["copy", "copy_all"],
            placeholder="Ask a medical literature question; attach PNG, JPEG or DICOM images.",
        )
        textbox = gr.MultimodalTextbox(
            elem_id="medgraph-input",
            file_types=IMAGE_FILE_TYPES,
            file_count="multiple",
            placeholder="Ask a question (attach images with the clip button)…",
            show_label=False,
            submit_btn=True,
            stop_btn=True,
        )
        gr.ChatInterface(
            chat_responder(service, limits),
            multimodal=True,
            chatbot=chatbot,
            textbox=textbox,
            additional_inputs=[thread],
            additional_outputs=[thread],
            api_visibility="private",
            concurrency_limit=concurrency_limit,
            analytics_enabled=False,
            autofocus=True,
            fill_height=True,
            flagging_mode="never",
        )
        # "Clear" empties the chat: the next question starts a new thread.
        chatbot.clear(lambda: None, None, [thread], api_visibility="private", queue=False)
    return blocks


def key_login(keys: Sequence[str]) -> Callable[[str, str], bool]:
    """Gradio's login check: any user name, and one of ``keys`` as the password."""
    encoded = [key.encode() for key in keys if key]

    def check(username: str, password: str) -> bool:
        del username  # the page has no accounts: the key is the credential
        given = password.encode()
        matched = False
        for key in encoded:  # compare with every key: timing does not reveal which matched
            matched |= hmac.compare_digest(given, key)
        return matched

    return check


def mount_chat_ui(
    app: FastAPI,
    service: ChatStreamer,
    path: str = "/",
    *,
    concurrency_limit: int | None = None,
    api_keys: Sequence[str] = (),
    blocked_paths: Sequence[Path] = (),
) -> None:
    """Mount the chat page on ``app`` at ``path``.

    Call it after every API route is registered: a mount at "/" takes all paths not matched
    before it. ``concurrency_limit`` caps simultaneous chat turns in Gradio's queue, where further
    turns wait their turn (default: the service's ``gate.limit``, else no cap). Uploads are capped
    by ``service.settings.server`` (``max_upload_bytes`` per file, ``max_images``,
    ``max_image_pixels``). With ``api_keys`` the page, its uploads and its files need a login
    whose password is one of the keys. Gradio never serves or copies files under
    ``blocked_paths`` (the server's home, index and data folders).
    """
    if concurrency_limit is None:
        limit = getattr(getattr(service, "gate", None), "limit", None)
        concurrency_limit = limit if isinstance(limit, int) else None
    limits = UploadLimits.of(service)
    blocks = build_chat_ui(service, concurrency_limit=concurrency_limit, limits=limits)
    theme = gr.themes.Default(
        primary_hue="blue",
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "monospace"],
    )
    keys = [key for key in api_keys if key]
    gr.mount_gradio_app(
        app,
        blocks,
        path=path,
        auth=key_login(keys) if keys else None,
        auth_message="Sign in with any name and one of the server's API keys as the password.",
        allowed_paths=[],
        blocked_paths=[str(Path(folder).resolve()) for folder in blocked_paths],
        footer_links=[],
        run_history=False,
        show_error=False,
        max_file_size=limits.max_file_bytes,
        ssr_mode=False,
        mcp_server=False,
        theme=theme,
        css=PAGE_CSS,
    )
    # Gradio checks that files named in a request were uploaded (are in its upload folder) only
    # for apps started with launch(); a mounted app skips the check unless marked as launched.
    blocks.has_launched = True
