"""Finding 2 of issue 26: slow connections are closed; a connection cap answers 503 beyond it.

Before: 300 connections sending one header or body byte at a time for 45 s were never closed
(plain ``uvicorn.run``: no header or body read timeout, no connection cap); a connection that sent
nothing stayed open too. Here the server runs as ``medgraph serve`` runs it
(:func:`medgraph.server.connections.server_config`), with short deadlines so the test is quick.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import WebSocket

from medgraph.assistant import Assistant
from medgraph.server.app import create_app
from tests.graphs.support import KeywordIndex, corpus_documents
from tests.security.cli_support import run_cli
from tests.security.slow_client import http_head, trickle
from tests.server.api_support import build_settings, running
from tests.server.test_api import QUESTION

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
KEEP_ALIVE = 1
SLACK = 1.5  # event-loop and scheduling delay on a busy 2-core machine
EARLY = 0.1  # a deadline never fires this much before its time


@contextmanager
def _serve(root: Path, **server: object) -> Iterator[str]:
    settings = build_settings(root, **server)
    with (
        Assistant(settings, index=KeywordIndex(corpus_documents(5))) as assistant,
        running(create_app(settings, assistant=assistant, web=False)) as url,
    ):
        yield url


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with a 1 s header deadline, a 2 s body deadline and a 1 s keep-alive."""
    with _serve(
        tmp_path_factory.mktemp("slow"),
        header_timeout_seconds=HEADER_TIMEOUT,
        body_timeout_seconds=BODY_TIMEOUT,
        keep_alive_seconds=KEEP_ALIVE,
    ) as served:
        yield served


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _chat_body(size: int) -> bytes:
    """A chat request body padded with spaces to exactly ``size`` bytes."""
    body = json.dumps({"messages": [{"role": "user", "content": QUESTION}]}).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def _quick_requests(url: str, count: int) -> list[float]:
    """Seconds each of ``count`` health requests (a fresh connection each) took; each is 200."""
    took = []
    for _ in range(count):
        started = time.monotonic()
        response = httpx.get(f"{url}/v1/health", timeout=10)
        took.append(time.monotonic() - started)
        assert response.status_code == 200, response.text
        time.sleep(0.2)
    return took


def test_headers_sent_a_byte_a_time_get_408_and_are_closed(url: str) -> None:
    head = http_head("GET", "/v1/health", "X-Padding: " + "a" * 80)
    with ThreadPoolExecutor(max_workers=3) as pool:
        slow = [
            pool.submit(trickle, _port(url), head, interval=0.25, give_up_after=HEADER_TIMEOUT + 5)
            for _ in range(3)
        ]
        took = _quick_requests(url, 4)  # while the three trickle
        results = [future.result() for future in slow]
    assert max(took) < HEADER_TIMEOUT, took
    for result in results:
        assert result.closed_after is not None, result
        assert HEADER_TIMEOUT - EARLY <= result.closed_after <= HEADER_TIMEOUT + SLACK, result
        assert result.received.startswith(b"HTTP/1.1 408 "), result
        assert result.sent < len(head)  # cut off before the headers were complete


def test_a_body_sent_a_byte_a_time_is_closed_while_a_full_one_is_answered(url: str) -> None:
    size = 400
    head = http_head(
        "POST", "/v1/chat/completions", "Content-Type: application/json", f"Content-Length: {size}"
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = [
            pool.submit(
                trickle,
                _port(url),
                _chat_body(size),
                prefix=head,
                interval=0.25,
                give_up_after=BODY_TIMEOUT + 5,
            )
            for _ in range(2)
        ]
        answered = httpx.post(
            f"{url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": QUESTION}]},
            timeout=60,
        )
        results = [future.result() for future in slow]
    assert answered.status_code == 200 and answered.json()["citations"], answered.text
    for result in results:
        assert result.closed_after is not None, result
        assert BODY_TIMEOUT - EARLY <= result.closed_after <= BODY_TIMEOUT + SLACK, result
        assert b"200 OK" not in result.received, result
        assert result.sent < size


def test_a_client_within_the_deadlines_is_answered_then_kept_alive_briefly(url: str) -> None:
    size = 200
    head = http_head(
        "POST", "/v1/chat/completions", "Content-Type: application/json", f"Content-Length: {size}"
    )
    # Headers and body a byte at a time, each well within its deadline.
    result = trickle(
        _port(url), head + _chat_body(size), interval=0.002, give_up_after=KEEP_ALIVE + 30
    )
    assert result.received.startswith(b"HTTP/1.1 200 "), result
    assert result.sent == len(head) + size
    assert result.closed_after is not None  # closed by the keep-alive timeout after the answer


def test_an_idle_or_kept_alive_connection_is_closed(url: str) -> None:
    idle = trickle(_port(url), b"", interval=0, give_up_after=HEADER_TIMEOUT + 5)
    assert idle.closed_after is not None, idle
    assert HEADER_TIMEOUT - EARLY <= idle.closed_after <= HEADER_TIMEOUT + SLACK, idle
    assert idle.received.startswith(b"HTTP/1.1 408 ")
    kept = trickle(
        _port(url),
        b"",
        prefix=http_head("GET", "/v1/health"),
        interval=0,
        give_up_after=KEEP_ALIVE + 5,
    )
    assert kept.received.startswith(b"HTTP/1.1 200 "), kept
    assert kept.closed_after is not None, kept
    assert KEEP_ALIVE - EARLY <= kept.closed_after <= KEEP_ALIVE + SLACK, kept


def test_connections_beyond_the_cap_get_503(tmp_path: Path) -> None:
    cap = 3
    with _serve(tmp_path, max_connections=cap, header_timeout_seconds=30) as url:
        port = _port(url)
        holders = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap - 1)]
        try:
            time.sleep(0.3)  # the server accepts them
            # With cap - 1 other connections open, this one is the cap-th: served.
            assert httpx.get(f"{url}/v1/health", timeout=10).status_code == 200
            holders.append(socket.create_connection(("127.0.0.1", port)))
            time.sleep(0.3)
            refused = httpx.get(f"{url}/v1/health", timeout=10)
            assert refused.status_code == 503, refused.text
            assert refused.headers["connection"] == "close"
            holders.pop().close()
            statuses = []
            for _ in range(50):  # the server sees the close within a few event-loop turns
                statuses.append(httpx.get(f"{url}/v1/health", timeout=10).status_code)
                if statuses[-1] == 200:
                    break
                time.sleep(0.1)
            assert statuses[-1] == 200, statuses
        finally:
            for holder in holders:
                holder.close()


def test_a_deadline_that_is_not_positive_stops_the_server_at_start(tmp_path: Path) -> None:
    result = run_cli(
        ["serve", "--port", "9", "--model", "none"],
        env={"MEDGRAPH_SERVER__HEADER_TIMEOUT_SECONDS": "0"},
        home=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "server.header_timeout_seconds" in result.stderr and "greater than 0" in result.stderr


def test_a_websocket_is_not_cut_by_the_read_deadlines(tmp_path: Path) -> None:
    settings = build_settings(tmp_path, header_timeout_seconds=0.5, body_timeout_seconds=0.5)
    with Assistant(settings, index=KeywordIndex(corpus_documents(5))) as assistant:
        app = create_app(settings, assistant=assistant, web=False)

        @app.websocket("/echo")
        async def echo(websocket: WebSocket) -> None:
            await websocket.accept()
            await websocket.send_text(await websocket.receive_text())

        with running(app) as url, socket.create_connection(("127.0.0.1", _port(url))) as sock:
            sock.settimeout(10)
            sock.sendall(
                http_head(
                    "GET",
                    "/echo",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version: 13",
                )
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
            time.sleep(1.5)  # three header deadlines
            mask = b"\x01\x02\x03\x04"
            text = b"still open"
            masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(text))
            sock.sendall(bytes([0x81, 0x80 | len(text)]) + mask + masked)  # one masked text frame
            assert sock.recv(4096) == bytes([0x81, len(text)]) + text
