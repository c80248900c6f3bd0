"""Checkpointers: a SQLite file by default (threads survive restarts), Postgres when configured."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from medgraph.errors import ConfigurationError
from medgraph.graphs.state import Answer, BestDraft, Finding, ImageRef, ToolUse
from medgraph.knowledge.citations import Citation, DraftSentence, SentenceCheck, Verification
from medgraph.knowledge.types import Chunk, Document, Evidence

STATE_TYPES = (
    Answer,
    BestDraft,
    Finding,
    ImageRef,
    ToolUse,
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


def _redacted(url: str) -> str:
    """``url`` with any password replaced, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def _postgres_checkpointer(url: str, max_connections: int) -> Iterator[BaseCheckpointSaver[str]]:
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool, PoolTimeout
    except ImportError as error:
        raise ConfigurationError(
            "a Postgres checkpointer needs: pip install 'medgraph[postgres]'"
        ) from error
    advice = (
        "check that the server runs and MEDGRAPH_GRAPH__CHECKPOINT_URL (or unset it to use SQLite)"
    )
    try:  # fail fast, with the server's reason, before the pool starts retrying in the background
        psycopg.connect(url, connect_timeout=10).close()
    except psycopg.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigurationError(
            f"cannot connect to the Postgres checkpointer at {_redacted(url)} ({reason}); {advice}"
        ) from error
    # The connection settings PostgresSaver.from_conn_string uses, over a small pool so that
    # concurrent threads (the HTTP server) do not queue on one connection and a dropped
    # connection is replaced.
    pool: ConnectionPool[Any] = ConnectionPool(
        url,
        min_size=1,
        max_size=max_connections,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        check=ConnectionPool.check_connection,
        open=False,
        name="medgraph-checkpoints",
    )
    try:
        pool.open(wait=True, timeout=15)
    except PoolTimeout as error:
        pool.close()
        raise ConfigurationError(
            f"cannot connect to the Postgres checkpointer at {_redacted(url)}; {advice}"
        ) from error
    try:
        saver = PostgresSaver(pool, serde=state_serializer())
        saver.setup()
        yield saver
    finally:
        pool.close()


@contextmanager
def open_checkpointer(
    path: Path, url: str | None = None, *, max_connections: int = 4
) -> Iterator[BaseCheckpointSaver[str]]:
    """A SQLite checkpointer at ``path``, or a Postgres one when ``url`` is a postgresql:// URL.

    Both use :func:`state_serializer`, so only medgraph's state types are revived from a
    checkpoint. ``max_connections`` bounds the Postgres connection pool.
    """
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(
                f"checkpoint URL {_redacted(url)!r} is not a postgresql:// URL; unset it to use "
                "SQLite"
            )
        with _postgres_checkpointer(url, max_connections) as saver:
            yield saver
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(str(path), check_same_thread=False)
    except (OSError, sqlite3.Error) as error:
        raise ConfigurationError(
            f"cannot write the checkpoint database {path} ({_reason(error)}); point "
            "MEDGRAPH_HOME at a writable folder"
        ) from error
    try:
        saver = SqliteSaver(connection, serde=state_serializer())
        try:
            saver.setup()
        except sqlite3.Error as error:
            raise ConfigurationError(
                f"cannot write the checkpoint database {path} ({error}); point MEDGRAPH_HOME "
                "at a writable folder"
            ) from error
        yield saver
    finally:
        connection.close()


def _reason(error: BaseException) -> str:
    """The OS's words for ``error`` (``strerror``) where it has them."""
    return getattr(error, "strerror", None) or str(error)
