"""Scale-out for real: two app instances (workers) sharing one ``chroma run`` server, two sharing
one Postgres checkpointer, and the ``medgraph serve`` command itself in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage

from medgraph.assistant import Assistant
from medgraph.server.app import create_app
from medgraph.server.scratch import PARENT_PREFIX
from medgraph.server.service import ChatService
from tests.graphs.support import dev_questions
from tests.knowledge.index_support import corpus_records, write_jsonl
from tests.security.slow_client import trickle
from tests.server.api_support import (
    KEY_A,
    build_index,
    build_settings,
    indexed_records,
    ingest_upload,
    record_text,
    running,
)
from tests.support import REPO_ROOT, chroma_server, dead_pid, free_port

SERVE_HEADER_TIMEOUT = 2.0


def _worker(stack: ExitStack, root: Path, name: str, **options: object) -> tuple[str, ChatService]:
    """One app instance with its own home (and BM25 folder), started on a free port."""
    settings = build_settings(root / name, **options)  # type: ignore[arg-type]
    index = stack.enter_context(build_index(settings))
    assistant = stack.enter_context(Assistant(settings, index=index))
    app = create_app(settings, assistant=assistant, web=False)
    url = stack.enter_context(running(app))
    return url, app.state.chat_service


def test_two_workers_share_one_chroma_server(tmp_path: Path) -> None:
    seed = write_jsonl(tmp_path / "seed.jsonl", indexed_records(20))
    new_record = corpus_records(700)[650]
    with ExitStack() as stack:
        chroma_url = stack.enter_context(chroma_server(tmp_path / "chroma"))
        first_url, _ = _worker(stack, tmp_path, "worker-1", chroma_url=chroma_url)
        second_url, second = _worker(stack, tmp_path, "worker-2", chroma_url=chroma_url)
        with httpx.Client(base_url=first_url, timeout=60) as first_client:
            c = first_client
            seeded = ingest_upload(c.post, c.get, "seed.jsonl", seed.read_bytes())
            assert seeded["report"]["documents_added"] == 20, seeded
            added = ingest_upload(c.post, c.get, "new.jsonl", json.dumps(new_record).encode())
            assert added["report"]["documents_added"] == 1, added
        # Vectors live on the server, not in either worker's folder.
        assert not (tmp_path / "worker-1" / "index" / "chroma").exists()
        query = new_record["sections"][0]["text"][:120]
        with httpx.Client(base_url=second_url, timeout=60) as second_client:
            hits = second_client.get("/v1/search", params={"q": query, "k": 3}).json()["data"]
            assert hits[0]["source_id"] == new_record["pmid"]
            assert hits[0]["text"] in record_text(new_record)
            health = second_client.get("/v1/health").json()
            assert health["index"] == {
                "ok": True,
                "documents": 21,
                "chunks": health["index"]["chunks"],
            }
        question = dev_questions(1)[0]
        with openai.OpenAI(base_url=f"{second_url}/v1", api_key="unused", max_retries=0) as client:
            completion = client.chat.completions.create(
                model="medgraph", messages=[{"role": "user", "content": question["question"]}]
            )
        citations = (completion.model_extra or {})["citations"]
        assert question["pmid"] in {c["source_id"] for c in citations}
        for citation in citations:
            chunks = second.index.get_chunks(citation["source_id"])
            assert any(citation["quote"] in chunk.text for chunk in chunks)


def test_two_workers_share_one_postgres_checkpointer(tmp_path: Path, postgres_url: str) -> None:
    """A conversation started on one worker continues on the other: the thread is in Postgres."""
    records = indexed_records(20)
    shared_index_settings = build_settings(tmp_path / "seed")
    build_index(shared_index_settings, records).close()
    index_dir = str(shared_index_settings.knowledge.index_dir)
    first_question, follow_up = dev_questions(1)[0]["question"], "How large was that study?"
    conversation = f"pg-{os.getpid()}-{time.time_ns()}"
    with ExitStack() as stack:
        workers = []
        for name in ("worker-1", "worker-2"):
            settings = build_settings(
                tmp_path / name, api_keys=[KEY_A], thread_secret="shared-worker-secret"
            )
            settings.knowledge = settings.knowledge.model_copy(update={"index_dir": index_dir})
            settings.graph = settings.graph.model_copy(update={"checkpoint_url": postgres_url})
            index = stack.enter_context(build_index(settings))
            assistant = stack.enter_context(Assistant(settings, index=index))
            app = create_app(settings, assistant=assistant, web=False)
            workers.append((stack.enter_context(running(app)), app.state.chat_service))
        headers = {"Authorization": f"Bearer {KEY_A}", "X-Conversation-Id": conversation}
        for (url, _), text in zip(workers, (first_question, follow_up), strict=True):
            response = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "medgraph", "messages": [{"role": "user", "content": text}]},
                headers=headers,
                timeout=60,
            )
            assert response.status_code == 200, response.text
        for _, service in workers:
            messages = service.thread_messages(service.api_thread_id(conversation, KEY_A))
            humans = [str(m.text) for m in messages if isinstance(m, HumanMessage)]
            assert humans == [first_question, follow_up]
    assert not (tmp_path / "worker-1" / "home" / "checkpoints.sqlite").exists()


@dataclass
class Served:
    """A running ``medgraph serve``: its URL, log, process and temp folder (its TMPDIR)."""

    url: str
    log: Path
    process: subprocess.Popen[bytes]
    temp_root: Path
    leftover: Path
    """A temp folder planted before the start, as a server process killed with -9 leaves it."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """``medgraph serve`` over an empty index folder (packaged MiniLM embeddings, extractive),
    with a 2 s header deadline."""
    temp_root = tmp_path / "tmp"
    leftover = temp_root / f"{PARENT_PREFIX}{dead_pid()}-k9" / "medgraph-request-1"
    leftover.mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"},
        "HF_HUB_OFFLINE": "1",
        "TMPDIR": str(temp_root),
        "MEDGRAPH_HOME": str(tmp_path / "home"),
        "MEDGRAPH_API_KEYS": f"{KEY_A},other-key-0123",
        "MEDGRAPH_INGEST_KEYS": KEY_A,
        "MEDGRAPH_SERVER__HEADER_TIMEOUT_SECONDS": str(SERVE_HEADER_TIMEOUT),
    }
    index = str(tmp_path / "index")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        command = ["serve", "--index", index, "--model", "none", "--port", str(port)]
        process = subprocess.Popen(
            [sys.executable, "-m", "medgraph", *command],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                try:
                    httpx.get(f"{url}/v1/health", timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.3)
            yield Served(url, log, process, temp_root, leftover.parent)
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_medgraph_serve_command(served: Served) -> None:
    url, log = served.url, served.log
    assert httpx.get(f"{url}/v1/models").status_code == 401  # MEDGRAPH_API_KEYS is on
    auth = {"Authorization": f"Bearer {KEY_A}"}
    health = httpx.get(f"{url}/v1/health", headers=auth).json()
    assert health["status"] == "degraded" and not health["index"]["ok"]  # nothing ingested yet
    corpus = "".join(json.dumps(record) + "\n" for record in indexed_records(6)).encode()
    with httpx.Client(base_url=url, headers=auth, timeout=300) as client:
        job = ingest_upload(client.post, client.get, "six.jsonl", corpus)
    assert job["report"]["documents_added"] == 6, job
    assert httpx.get(f"{url}/v1/health", headers=auth).json()["index"]["documents"] == 6
    with openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_A, max_retries=0, timeout=120) as client:
        assert [m.id for m in client.models.list().data] == ["medgraph"]
        stream = client.chat.completions.create(
            model="medgraph",
            messages=[{"role": "user", "content": dev_questions(1)[0]["question"]}],
            stream=True,
        )
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()
    assert (chunks[-1].model_extra or {})["citations"]
    page = httpx.get(f"{url}/", follow_redirects=True, timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "engine extractive, auth on" in log.read_text()
    # The read deadline of the settings: a connection that sends nothing gets 408 and is closed.
    port = urlsplit(served.url).port
    assert port is not None
    idle = trickle(port, b"", interval=0, give_up_after=SERVE_HEADER_TIMEOUT + 10)
    assert idle.received.startswith(b"HTTP/1.1 408 "), idle
    assert idle.closed_after is not None
    assert SERVE_HEADER_TIMEOUT - 0.1 <= idle.closed_after <= SERVE_HEADER_TIMEOUT + 3
    assert not served.leftover.exists()  # a dead process's folder, removed at start-up
    pid = served.process.pid
    (ours,) = served.temp_root.glob(f"{PARENT_PREFIX}{pid}-*")
    assert (ours / "web").is_dir()  # the page's uploads live there too
    served.process.terminate()
    served.process.wait(timeout=60)  # uvicorn shuts down, then re-raises SIGTERM
    assert "Application shutdown complete" in served.log.read_text()
    assert not ours.exists() and list(served.temp_root.glob("medgraph-*")) == []
