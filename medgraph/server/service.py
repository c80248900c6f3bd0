"""``ChatService``: the one object the HTTP API and the web page use to run the assistant.

The assistant graph runs synchronous model work, so every generation runs in a worker thread and
its stream items are handed to the event loop through a queue: the loop never blocks on a model.
A :class:`GenerationGate` bounds how many answers are generated at once (one for local
transformers models, several for the extractive and openai engines); a request that cannot get a
slot within ``queue_wait_seconds`` fails with :class:`GenerationBusyError` (HTTP 429).

Threads of different conversations are isolated by the checkpointer: each request names its own
``thread_id``, and the API namespaces ids per API key (:func:`api_thread_id`, a keyed hash with the
server's secret) so one key cannot read another's conversations. The web page should use ids
from :func:`web_thread_id`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medgraph.errors import ConfigurationError, MedgraphError
from medgraph.knowledge.types import UPLOAD_ORIGIN_PREFIX
from medgraph.server.ingest_jobs import IngestJob, IngestJobs, IngestLimits
from medgraph.server.scratch import ScratchSpace

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

    from medgraph.assistant import Assistant
    from medgraph.graphs.state import Answer
    from medgraph.knowledge.types import Evidence
    from medgraph.settings import Settings

_CONVERSATION_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")


class GenerationBusyError(MedgraphError):
    """Every generation slot stayed busy for the whole wait; retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidConversationIdError(MedgraphError):
    """A conversation id has characters or a length the server does not accept."""


class ReadOnlyIndexError(MedgraphError):
    """The assistant's index has no ``ingest`` method (a custom searcher was given)."""


class GenerationGate:
    """A counting gate on concurrent generations, usable from any thread and any event loop.

    ``acquire`` waits (polling, so it needs no particular loop) up to ``wait_seconds`` for a slot;
    ``release`` may be called from the worker thread that finished the generation.
    """

    _POLL_SECONDS = 0.02

    def __init__(self, limit: int, wait_seconds: float, retry_after: int) -> None:
        if limit < 1:
            raise ValueError(f"the generation limit must be 1 or more, got {limit}")
        self.limit = limit
        self.wait_seconds = wait_seconds
        self.retry_after = retry_after
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._active = 0
        self._waiting = 0

    @property
    def active(self) -> int:
        """Generations running now."""
        return self._active

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return self._waiting

    def try_acquire(self) -> bool:
        """Take a slot if one is free now."""
        if self._slots.acquire(blocking=False):
            with self._lock:
                self._active += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, waiting up to ``wait_seconds``; raise :class:`GenerationBusyError`."""
        if self.try_acquire():
            return
        deadline = time.monotonic() + self.wait_seconds
        with self._lock:
            self._waiting += 1
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(self._POLL_SECONDS)
                if self.try_acquire():
                    return
        finally:
            with self._lock:
                self._waiting -= 1
        raise GenerationBusyError(
            f"all {self.limit} generation slot(s) are busy; retry in {self.retry_after} s "
            "(or raise server.max_concurrent_generations if the hardware allows)",
            retry_after=self.retry_after,
        )

    def release(self) -> None:
        """Give a slot back (thread-safe)."""
        with self._lock:
            self._active -= 1
        self._slots.release()


def key_namespace(api_key: str, secret: bytes) -> str:
    """A keyed hash (HMAC-SHA256 with the server's secret) of an API key, 32 hex characters.

    Without the secret, a stored namespace cannot be matched to a key by hashing guesses.
    """
    return hmac.new(secret, api_key.encode(), hashlib.sha256).hexdigest()[:32]


def api_thread_id(conversation_id: str, api_key: str | None, secret: bytes) -> str:
    """The checkpointer thread of an API conversation: namespaced by :func:`key_namespace`.

    Two keys using the same conversation id get different threads; without auth every client
    shares the ``public`` namespace.
    """
    check_conversation_id(conversation_id)
    namespace = key_namespace(api_key, secret) if api_key else "public"
    return f"api:{namespace}:{conversation_id}"


SECRET_FILE = "server-secret"


def load_thread_secret(settings: Settings) -> bytes:
    """The server secret of thread ids: ``server.thread_secret``, else ``<home>/server-secret``
    (created with 32 random bytes, mode 0600, on first use).

    A shared checkpoint database (``graph.checkpoint_url``) needs the setting, the same on every
    worker; without it this raises :class:`~medgraph.errors.ConfigurationError`.
    """
    configured = settings.server.thread_secret
    if configured is not None:
        return configured.get_secret_value().encode()
    if settings.graph.checkpoint_url:
        raise ConfigurationError(
            "workers sharing a checkpoint database need one thread secret: set "
            "MEDGRAPH_SERVER__THREAD_SECRET to the same random text on every worker"
        )
    path = Path(settings.home) / SECRET_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                out.write(secrets.token_bytes(32))
        except FileExistsError:
            pass
        secret = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(
            f"cannot keep the server secret in {path} ({error.strerror}); make MEDGRAPH_HOME "
            "writable or set MEDGRAPH_SERVER__THREAD_SECRET"
        ) from error
    if len(secret) < 16:
        raise ConfigurationError(f"{path} holds no usable secret; delete it to make a new one")
    return secret


def web_thread_id(session_id: str) -> str:
    """The checkpointer thread of a web-page conversation (a namespace the API never produces)."""
    check_conversation_id(session_id)
    return f"web:{session_id}"


def check_conversation_id(conversation_id: str) -> str:
    """Return ``conversation_id`` if it is 1-128 of ``A-Z a-z 0-9 . _ : @ -``; else raise."""
    if not isinstance(conversation_id, str) or not _CONVERSATION_ID.fullmatch(conversation_id):
        raise InvalidConversationIdError(
            f"conversation id {str(conversation_id)[:40]!r} is not accepted; use 1-128 "
            "characters from letters, digits and . _ : @ -"
        )
    return conversation_id


class _Finished:
    """Queue marker: the worker thread is done (``error`` set when it failed)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class ChatService:
    """The assistant behind an async API with a concurrency gate.

    Attributes used by the web page: ``settings`` (:class:`medgraph.Settings`), ``assistant``
    (:class:`medgraph.Assistant`), ``gate`` (:class:`GenerationGate`).

    Main methods:

    - ``async for mode, data in service.stream(question, images, thread_id)``: the same items as
      :meth:`medgraph.Assistant.stream` (``"updates"``, ``"custom"``, ``"messages"``, and last
      ``("answer", Answer)``), produced in a worker thread while holding a generation slot.
      Raises :class:`GenerationBusyError` (before any item) when no slot frees up in time, and
      any :class:`~medgraph.errors.MedgraphError` of the assistant (empty question, bad image).
    - ``await service.ask(question, images, thread_id)`` -> :class:`~medgraph.graphs.state.Answer`.
    - ``await service.search(query, k)``, ``service.submit_ingest(data, name, fmt, key)`` (a
      background job), ``await service.health()``, ``service.thread_messages(thread_id)``.
    """

    def __init__(
        self,
        assistant: Assistant,
        settings: Settings | None = None,
        *,
        scratch: ScratchSpace | None = None,
    ) -> None:
        """Wrap ``assistant``; limits come from ``settings.server`` (default: the assistant's).

        Request and upload files go to ``scratch`` (default: a new :class:`ScratchSpace` in the
        temp folder), which :meth:`close` removes.
        """
        self.assistant = assistant
        self.settings = settings or assistant.settings
        self.scratch = scratch or ScratchSpace()
        server = self.settings.server
        limit = server.generation_limit(self.settings.models.engine)
        self.gate = GenerationGate(limit, server.queue_wait_seconds, server.retry_after_seconds)
        # One thread per possible generation, plus room for searches and ingests.
        self._executor = ThreadPoolExecutor(
            max_workers=limit + 4, thread_name_prefix="medgraph-generate"
        )
        self._jobs: IngestJobs | None = None
        self.thread_secret = load_thread_secret(self.settings)

    def api_thread_id(self, conversation_id: str, api_key: str | None) -> str:
        """The thread of an API conversation of ``api_key`` (see :func:`api_thread_id`)."""
        return api_thread_id(conversation_id, api_key, self.thread_secret)

    def close(self) -> None:
        """Stop the worker threads (after the running ones finish); remove the scratch folder."""
        if self._jobs is not None:
            self._jobs.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.scratch.close()

    @property
    def engine(self) -> str:
        """The assistant's engine (``extractive`` or ``<engine>:<model>``)."""
        return self.assistant.engine

    def _run_stream(
        self,
        question: str,
        images: Sequence[Path],
        thread_id: str,
        visible_origins: Sequence[str] | None,
    ) -> Iterator[Any]:
        return self.assistant.stream(
            question, images=list(images), thread_id=thread_id, visible_origins=visible_origins
        )

    async def stream(
        self, question: str, images: Sequence[Path], thread_id: str, api_key: str | None = None
    ) -> AsyncIterator[tuple[str, Any]]:
        """Yield the assistant's ``(mode, data)`` stream items for one question (see the class).

        Retrieval sees what ``api_key`` may see (:meth:`visible_origins`). The slot is held until
        the worker thread finishes, even if the caller stops iterating early (the graph cannot be
        interrupted mid-node; its result is still checkpointed).
        """
        visible = self.visible_origins(api_key)
        await self.gate.acquire()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        abandoned = threading.Event()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed while the thread worked
                abandoned.set()

        def work() -> None:
            try:
                for item in self._run_stream(question, images, thread_id, visible):
                    put(item)
                    if abandoned.is_set():
                        break
            except BaseException as error:
                put(_Finished(error))
            else:
                put(_Finished())
            finally:
                self.gate.release()

        try:
            loop.run_in_executor(self._executor, work)
        except BaseException:
            self.gate.release()
            raise
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Finished):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            abandoned.set()

    async def ask(
        self, question: str, images: Sequence[Path], thread_id: str, api_key: str | None = None
    ) -> Answer:
        """The final answer of :meth:`stream`."""
        answer: Answer | None = None
        async for mode, data in self.stream(question, images, thread_id, api_key):
            if mode == "answer":
                answer = data
        if answer is None:  # the assistant always ends its stream with the answer
            raise RuntimeError("the assistant stream ended without an answer")
        return answer

    def thread_messages(self, thread_id: str) -> list[BaseMessage]:
        """The messages the checkpointer holds for ``thread_id`` (empty for an unknown thread)."""
        state = self.assistant.graph.get_state({"configurable": {"thread_id": thread_id}})
        return list(state.values.get("messages", [])) if state and state.values else []

    @property
    def index(self) -> Any:
        """The assistant's literature index (a LiteratureIndex unless a custom one was given)."""
        return self.assistant.context.index

    async def search(self, query: str, k: int, api_key: str | None = None) -> list[Evidence]:
        """Hybrid search of the literature index as ``api_key`` sees it, in a worker thread."""
        origins = self.visible_origins(api_key)
        where = None if origins is None else {"origins": list(origins)}
        loop = asyncio.get_running_loop()
        hits = await loop.run_in_executor(
            self._executor, lambda: self.index.search(query, k=k, where=where)
        )
        return list(hits)

    def visible_origins(self, api_key: str | None) -> tuple[str, ...] | None:
        """The upload origins ``api_key`` may retrieve: its own with private uploads
        (``server.upload_visibility``), None (all) with shared ones."""
        if self.settings.server.upload_visibility == "shared":
            return None
        return (f"{UPLOAD_ORIGIN_PREFIX}{self.key_owner(api_key)}",)

    def submit_ingest(self, data: bytes, filename: str, fmt: str, api_key: str | None) -> IngestJob:
        """Queue one uploaded file for ingest as ``api_key``'s upload; the job (see
        :mod:`medgraph.server.ingest_jobs`). Raises ReadOnlyIndexError or IngestQuotaError."""
        return self._ingest_jobs().submit(data, filename, fmt, self.key_owner(api_key))

    def ingest_job(self, job_id: str, api_key: str | None) -> IngestJob | None:
        """The ingest job ``job_id`` if ``api_key`` submitted it."""
        return self._ingest_jobs().get(job_id, self.key_owner(api_key))

    def key_owner(self, api_key: str | None) -> str:
        """The namespace of ``api_key`` (a keyed hash), ``public`` without auth."""
        return key_namespace(api_key, self.thread_secret) if api_key else "public"

    def _ingest_jobs(self) -> IngestJobs:
        if self._jobs is None:
            ingest = getattr(self.index, "ingest", None)
            if not callable(ingest):
                raise ReadOnlyIndexError(
                    "this server's index cannot ingest (a custom searcher was given); "
                    "serve a LiteratureIndex to upload documents"
                )
            server = self.settings.server
            self._jobs = IngestJobs(
                ingest,
                self.scratch,
                IngestLimits(
                    max_bytes=server.max_ingest_bytes,
                    max_documents=server.max_ingest_documents,
                    max_chunks=server.max_ingest_chunks,
                    max_jobs_per_key=server.max_ingest_jobs_per_key,
                    max_bytes_per_key=server.max_ingest_bytes_per_key,
                ),
            )
        return self._jobs

    _HEALTH_WAIT_SECONDS = 1.0

    def _index_health(self) -> dict[str, Any]:
        if not callable(getattr(self.index, "stats", None)):
            return {"ok": True}  # a custom searcher has no stats to report
        try:
            stats = self.index.stats()
        except MedgraphError as error:
            return {"ok": False, "error": str(error)}
        return {"ok": True, "documents": stats.documents, "chunks": stats.chunks}

    async def health(self) -> dict[str, Any]:
        """Engine, index size, generation slots and ingest jobs (no model call).

        The index is asked in a worker thread for at most a second; a busy index is reported
        as such rather than holding up the event loop.
        """
        loop = asyncio.get_running_loop()
        try:
            index = await asyncio.wait_for(
                loop.run_in_executor(self._executor, self._index_health),
                self._HEALTH_WAIT_SECONDS,
            )
        except TimeoutError:
            index = {"ok": True, "busy": True}
        return {
            "status": "ok" if index["ok"] else "degraded",
            "engine": self.engine,
            "index": index,
            "generations": {
                "active": self.gate.active,
                "waiting": self.gate.waiting,
                "limit": self.gate.limit,
            },
            "ingest_jobs": {"active": self._jobs.active if self._jobs is not None else 0},
        }
