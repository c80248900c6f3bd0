"""``Assistant``: the grounded medical assistant behind one Python object.

    >>> from medgraph import Assistant, Settings
    >>> assistant = Assistant(Settings.preset("offline"))
    >>> answer = assistant.ask("Does metformin reduce mortality in heart failure?")
    >>> print(answer.text); [c.reference for c in answer.citations]

Threads persist in a SQLite checkpointer (``settings.home/checkpoints.sqlite``) or Postgres
(``MEDGRAPH_GRAPH__CHECKPOINT_URL``), so a conversation continues across runs.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Durability, StreamMode

from medgraph.errors import MedgraphError
from medgraph.graphs.assistant import (
    compile_assistant_graph,
    context_from_settings,
    pending_clarification,
)
from medgraph.graphs.attachments import ATTACHMENTS_KEY, Attachments, attach
from medgraph.graphs.checkpoint import open_checkpointer
from medgraph.graphs.state import Answer, ImageRef
from medgraph.settings import Settings
from medgraph.tools.literature import VISIBLE_ORIGINS_KEY, EvidenceSearcher

if TYPE_CHECKING:
    from medgraph.graphs.research_report import Report

STREAM_MODES: tuple[StreamMode, ...] = ("updates", "custom", "messages")


CHECKPOINT_DURABILITY: Durability = "exit"
"""Checkpoint a turn when it ends (or stops to ask), not after every step: the conversation
still resumes, and a turn stores its state once instead of once per node (the checkpointer
grew by about 30x the question's size per turn with per-step checkpoints)."""


class ThreadNotFoundError(MedgraphError):
    """A thread id was given to continue, but no such conversation exists."""


class EmptyQuestionError(MedgraphError):
    """The question is empty or only whitespace."""


class InvalidTextError(MedgraphError):
    """The question holds characters that are not text (lone surrogates: bytes that were not
    UTF-8, or a broken escape)."""


class QuestionTooLongError(MedgraphError):
    """The question is longer than ``graph.max_question_chars``."""


def check_question(question: str, max_chars: int) -> str:
    """``question`` without surrounding whitespace; raise EmptyQuestionError, InvalidTextError or
    QuestionTooLongError naming the problem."""
    text = question.strip() if isinstance(question, str) else ""
    if not text:
        raise EmptyQuestionError("the question is empty; ask something, e.g. 'Does aspirin ...?'")
    if len(text) > max_chars:
        raise QuestionTooLongError(
            f"the question has {len(text)} characters, over the limit of {max_chars}; shorten "
            "it (ingest long documents instead, or raise graph.max_question_chars)"
        )
    bad = next((i for i, char in enumerate(text) if "\ud800" <= char <= "\udfff"), None)
    if bad is not None:
        raise InvalidTextError(
            f"the question is not valid text: character {bad + 1} is a lone surrogate (bytes "
            "that are not UTF-8, or a broken \\u escape); send UTF-8 text"
        )
    return text


class ClarificationPendingError(MedgraphError):
    """Images were attached to a reply to a clarifying question (the reply must be text)."""


class Assistant:
    """Ask grounded medical questions; every answer cites ingested literature.

    Models and index come from ``settings`` unless given (tests and applications may pass any
    LangChain chat model and any object with the index's ``search`` method). ``tools``: LangChain
    tools of your own, offered to the reasoner beside
    :func:`~medgraph.tools.registry.default_tools`; each call and its result is listed in the
    answer's ``tool_calls``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        text_model: BaseChatModel | None = None,
        image_model: BaseChatModel | None = None,
        index: EvidenceSearcher | None = None,
        tools: Sequence[BaseTool] = (),
        checkpoint_path: Path | None = None,
    ) -> None:
        """Build the graph and open the checkpointer."""
        self.settings = settings or Settings()
        self._stack = ExitStack()
        self.context = context_from_settings(
            self.settings, text_model=text_model, image_model=image_model, index=index, tools=tools
        )
        self.checkpointer = self._stack.enter_context(
            open_checkpointer(
                checkpoint_path or self.settings.checkpoint_path, self.settings.graph.checkpoint_url
            )
        )
        self.graph = compile_assistant_graph(self.context, checkpointer=self.checkpointer)

    def close(self) -> None:
        """Close the checkpointer (and the index, if it has ``close``)."""
        self._stack.close()
        close = getattr(self.context.index, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @functools.cached_property
    def research_graph(self) -> CompiledStateGraph:
        """The research graph over this assistant's models, index and checkpointer (compiled once,
        on first use)."""
        from medgraph.graphs.research import compile_research_graph

        return compile_research_graph(
            self.context, self.settings.research, checkpointer=self.checkpointer
        )

    @property
    def engine(self) -> str:
        """ "extractive" or "<engine>:<model>"."""
        return self.context.engine

    def thread_exists(self, thread_id: str) -> bool:
        """Whether a conversation with this id has been checkpointed."""
        return self.checkpointer.get_tuple({"configurable": {"thread_id": thread_id}}) is not None

    def pending_clarification(self, thread_id: str) -> Answer | None:
        """The clarifying question thread ``thread_id`` waits on (kind ``clarify``), or ``None``.

        While one is pending, the next :meth:`ask` in that thread is taken as the reply.
        """
        snapshot = self.graph.get_state({"configurable": {"thread_id": thread_id}})
        return pending_clarification(snapshot, self.engine, thread_id)

    def attach(self, images: Sequence[str | Path]) -> tuple[list[ImageRef], Attachments]:
        """Read image files, DICOM files, study folders and zips (see
        :func:`medgraph.graphs.attachments.attach`) with this assistant's limits."""
        graph = self.settings.graph
        return attach(
            images,
            max_slices=graph.max_series_slices,
            max_study_bytes=graph.max_study_bytes,
            max_study_files=graph.max_study_files,
        )

    def _prepare(
        self,
        question: str,
        images: Sequence[str | Path],
        thread_id: str | None,
        create: bool,
        visible_origins: Sequence[str] | None = None,
    ) -> tuple[dict[str, Any] | Command[Any], RunnableConfig, str]:
        """The graph input (a new turn, or the resume of a pending clarification) and config."""
        question = check_question(question, self.settings.graph.max_question_chars)
        if thread_id is not None and not create and not self.thread_exists(thread_id):
            raise ThreadNotFoundError(
                f"no conversation with thread id {thread_id!r}; omit --thread to start a new one"
            )
        thread = thread_id or uuid.uuid4().hex
        config: RunnableConfig = {"configurable": {"thread_id": thread}}
        if visible_origins is not None:
            config["configurable"][VISIBLE_ORIGINS_KEY] = list(visible_origins)
        if thread_id is not None:
            pending = self.pending_clarification(thread_id)
            if pending is not None:
                if images:
                    raise ClarificationPendingError(
                        f"thread {thread_id!r} is waiting for a text reply to: {pending.text} "
                        "Reply without images, or start a new conversation to attach them"
                    )
                return Command(resume=question), config, thread
        refs, attachments = self.attach(images)
        # The pixels travel in the run's config, which LangGraph never checkpoints; state holds
        # only ids, hashes and non-identifying metadata.
        config["configurable"][ATTACHMENTS_KEY] = attachments
        state = {"messages": [HumanMessage(question)], "images": refs}
        return state, config, thread

    def _answer(self, config: RunnableConfig, thread: str) -> Answer:
        """The run's outcome: the clarifying question it stopped on, or the final answer."""
        snapshot = self.graph.get_state(config)
        pending = pending_clarification(snapshot, self.engine, thread)
        if pending is not None:
            return pending
        answer: Answer = snapshot.values["answer"]
        return answer.model_copy(update={"thread_id": thread})

    def ask(
        self,
        question: str,
        images: Sequence[str | Path] = (),
        thread_id: str | None = None,
        *,
        create: bool = True,
        visible_origins: Sequence[str] | None = None,
    ) -> Answer:
        """Answer ``question`` (with optional image files) in thread ``thread_id``.

        When the question is too ambiguous to answer, the returned answer has kind ``clarify``:
        its text is a clarifying question, and the next ``ask(reply, thread_id=answer.thread_id)``
        resumes the run with that reply. ``create=False`` requires the thread to exist (the CLI's
        ``--thread``). ``visible_origins`` limits retrieval to the operator's corpus and uploads
        of those origins (a server's private uploads); None retrieves every record.
        """
        graph_input, config, thread = self._prepare(
            question, images, thread_id, create, visible_origins
        )
        result = self.graph.invoke(graph_input, config, durability=CHECKPOINT_DURABILITY)
        if result.get("__interrupt__"):
            return self._answer(config, thread)
        answer: Answer = result["answer"]
        return answer.model_copy(update={"thread_id": thread})

    def stream(
        self,
        question: str,
        images: Sequence[str | Path] = (),
        thread_id: str | None = None,
        *,
        create: bool = True,
        stream_mode: Sequence[StreamMode] = STREAM_MODES,
        visible_origins: Sequence[str] | None = None,
    ) -> Iterator[tuple[str, Any]]:
        """Yield ``(mode, data)``: node updates, custom progress events and answer tokens.

        The last item is ``("answer", Answer)``; its kind is ``clarify`` when the run stopped to
        ask a clarifying question (reply with ``stream(reply, thread_id=...)``, as for :meth:`ask`).
        ``visible_origins`` as for :meth:`ask`.
        """
        graph_input, config, thread = self._prepare(
            question, images, thread_id, create, visible_origins
        )
        # With a list of modes LangGraph yields (mode, data) pairs; its overloads type that as v1.
        pairs = self.graph.stream(
            graph_input, config, stream_mode=list(stream_mode), durability=CHECKPOINT_DURABILITY
        )
        yield from cast("Iterator[tuple[str, Any]]", pairs)
        yield "answer", self._answer(config, thread)

    def research(self, topic: str, *, approve_plan: bool = False, **options: Any) -> Report:
        """A cited markdown report on ``topic`` (see :func:`medgraph.research.run_research`);
        with ``approve_plan`` its status is ``awaiting_approval`` and it holds only the plan."""
        from medgraph.research import run_research

        return run_research(self, topic, approve_plan=approve_plan, **options)

    def resume_research(self, thread_id: str, decision: Any = "accept", **options: Any) -> Report:
        """Continue a research run waiting at plan approval: ``"accept"``, ``"cancel"`` or an
        edited list of sub-questions (see :func:`medgraph.research.resume_research`)."""
        from medgraph.research import resume_research

        return resume_research(self, thread_id, decision, **options)

    async def aask(
        self,
        question: str,
        images: Sequence[str | Path] = (),
        thread_id: str | None = None,
        *,
        create: bool = True,
    ) -> Answer:
        """Async :meth:`ask` (the graph runs its synchronous nodes in a worker thread)."""
        import asyncio

        return await asyncio.to_thread(self.ask, question, images, thread_id, create=create)

    async def astream(
        self,
        question: str,
        images: Sequence[str | Path] = (),
        thread_id: str | None = None,
        *,
        create: bool = True,
    ) -> AsyncIterator[tuple[str, Any]]:
        """Async :meth:`stream`."""
        import asyncio

        iterator = self.stream(question, images, thread_id, create=create)
        sentinel = object()
        while True:
            item = await asyncio.to_thread(next, iterator, sentinel)
            if item is sentinel:
                return
            yield item  # type: ignore[misc]
