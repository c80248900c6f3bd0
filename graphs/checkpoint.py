"""Checkpointers: a SQLite file by default (threads survive restarts), Postgres when configured."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from medgraph.errors import ConfigurationError
from medgraph.graphs.state import Answer, BestDraft, Finding, ImageRef
from medgraph.knowledge.citations import Citation, DraftSentence, SentenceCheck, Verification
from medgraph.knowledge.types import Chunk, Document, Evidence

STATE_TYPES = (
    Answer,
    BestDraft,
    Finding,
    ImageRef,
    Citation,
    DraftSentence,
    SentenceCheck,
    Verification,
    Chunk,
    Document,
    Evidence,
)


def state_serializer() -> JsonPlusSerializer:
    """A serializer that revives medgraph's state types and LangChain messages, nothing else."""
    return JsonPlusSerializer(allowed_msgpack_modules=list(STATE_TYPES))


@contextmanager
def open_checkpointer(path: Path, url: str | None = None) -> Iterator[BaseCheckpointSaver[str]]:
    """A SQLite checkpointer at ``path``, or a Postgres one when ``url`` is a postgresql:// URL."""
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(
                f"checkpoint URL {url!r} is not a postgresql:// URL; unset it to use SQLite"
            )
        try:
            from langgraph.checkpoint.postgres import PostgresSaver
        except ImportError as error:
            raise ConfigurationError(
                "a Postgres checkpointer needs: pip install 'medgraph[postgres]'"
            ) from error
        with PostgresSaver.from_conn_string(url) as saver:
            saver.serde = state_serializer()
            saver.setup()
            yield saver
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(str(path), check_same_thread=False)
    try:
        saver = SqliteSaver(connection, serde=state_serializer())
        saver.setup()
        yield saver
    finally:
        connection.close()
