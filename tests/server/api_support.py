"""Helpers for the HTTP API tests: a small real literature index, settings, and the app served by
uvicorn on a free port of 127.0.0.1 (real HTTP, in a background thread)."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from medgraph.knowledge.index import LiteratureIndex
from medgraph.knowledge.types import Evidence
from medgraph.server.config import ServerSettings
from medgraph.server.connections import server_config
from medgraph.settings import Settings
from tests.graphs.support import dev_questions
from tests.knowledge.index_support import HashEmbedder, corpus_records, write_jsonl

KEY_A = "test-key-alpha"
KEY_B = "test-key-bravo"


def indexed_records(count: int = 40) -> list[dict[str, Any]]:
    """PubMedQA records for the test index: the abstracts behind the first 20 dev questions, then
    corpus records in file order up to ``count``."""
    wanted = {question["pmid"] for question in dev_questions(20)}
    records = corpus_records()
    chosen = [r for r in records if r["pmid"] in wanted][:count]
    chosen += [r for r in records if r["pmid"] not in wanted][: max(0, count - len(chosen))]
    return chosen


def record_text(record: Mapping[str, Any]) -> str:
    """All section texts of a corpus record."""
    return " ".join(section["text"] for section in record["sections"])


def build_settings(
    root: Path, *, chroma_url: str | None = None, index_name: str = "index", **server: Any
) -> Settings:
    """Extractive settings with home and index under ``root``; ``server`` overrides limits."""
    settings = Settings(home=root / "home")
    settings.models = settings.models.model_copy(update={"engine": "extractive"})
    settings.knowledge = settings.knowledge.model_copy(
        update={"index_dir": root / index_name, "chroma_url": chroma_url}
    )
    settings.server = ServerSettings(**{"api_keys": [], **server})
    return settings


def build_index(settings: Settings, records: Sequence[Mapping[str, Any]] = ()) -> LiteratureIndex:
    """A real LiteratureIndex (HashEmbedder) holding ``records``."""
    index = LiteratureIndex(settings.knowledge, embedder=HashEmbedder())
    if records:
        corpus = write_jsonl(Path(settings.home) / "seed.jsonl", [dict(r) for r in records])
        index.ingest([corpus], progress=False)
    return index


class HeldIndex:
    """An index whose searches wait until ``release`` is set: holds a generation slot open."""

    def __init__(self, index: LiteratureIndex) -> None:
        self.index = index
        self.release = threading.Event()
        self.entered = threading.Event()

    def search(
        self, query: str, k: int = 10, mode: str = "hybrid", where: Any = None
    ) -> list[Evidence]:
        self.entered.set()
        assert self.release.wait(timeout=60), "the test never released the held search"
        return self.index.search(query, k=k, mode=mode, where=where)


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` as ``medgraph serve`` does (uvicorn with the read deadlines, keep-alive and
    connection cap of the app's server settings), in a thread on a free port; yields its base
    URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = getattr(app.state, "settings", None)
    limits = settings.server if settings is not None else ServerSettings()
    server = uvicorn.Server(server_config(app, limits, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def data_url(path: Path, media_type: str) -> str:
    """A file as a base64 data URL."""
    return f"data:{media_type};base64,{base64.b64encode(path.read_bytes()).decode()}"


def png_data_url(width: int, height: int) -> str:
    """A blank PNG of the given size as a data URL (a few KB even when huge in pixels)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"


def user_message(text: str, *image_urls: str) -> dict[str, Any]:
    """An OpenAI user message with text and image_url parts."""
    if not image_urls:
        return {"role": "user", "content": text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in image_urls]
    return {"role": "user", "content": parts}


def ingest_upload(
    post: Any, get: Any, name: str, payload: bytes, timeout: float = 300
) -> dict[str, Any]:
    """Upload ``payload`` through ``POST /v1/ingest`` (202 + job) and poll the job until it has
    finished; the finished job. ``post``/``get`` are httpx-style callables taking a path."""
    response = post("/v1/ingest", files={"file": (name, payload, "text/plain")})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/v1/ingest/{job['id']}"
    deadline = time.monotonic() + timeout
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"ingest job {job['id']} did not finish"
        time.sleep(0.05)
        job = get(f"/v1/ingest/{job['id']}").json()
    return job
