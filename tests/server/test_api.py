"""The OpenAI-compatible API against the running app (uvicorn, real HTTP): auth, limits, bad
payloads, streaming through the official ``openai`` client, citations, ingest and search, and
thread isolation under 20 concurrent chats."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage

from medgraph.assistant import Assistant
from medgraph.errors import IndexUnavailableError
from medgraph.knowledge.index import LiteratureIndex
from medgraph.server.app import create_app
from medgraph.server.openai_api import text_deltas
from medgraph.server.service import ChatService
from tests.graphs.support import dev_questions
from tests.knowledge.index_support import corpus_records
from tests.server.api_support import (
    KEY_A,
    KEY_B,
    HeldIndex,
    build_index,
    build_settings,
    data_url,
    indexed_records,
    ingest_upload,
    png_data_url,
    record_text,
    running,
    user_message,
)
from tests.support import png_header_only, shared_data_dir

QUESTION = dev_questions(1)[0]["question"]
MAX_BODY = 2 * 1024 * 1024
MAX_PIXELS = 2_000_000


class Server:
    """The running app and what the tests inspect behind it."""

    def __init__(self, url: str, service: ChatService, index: LiteratureIndex) -> None:
        self.url = url
        self.service = service
        self.index = index

    def client(self, key: str = KEY_A) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )

    def openai(self, key: str = KEY_A) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=60)

    def human_texts(self, conversation_id: str, key: str = KEY_A) -> list[str]:
        messages = self.service.thread_messages(self.service.api_thread_id(conversation_id, key))
        return [str(m.text) for m in messages if isinstance(m, HumanMessage)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("api")
    settings = build_settings(
        root,
        api_keys=[KEY_A, KEY_B],
        ingest_keys=[KEY_A],
        max_body_bytes=MAX_BODY,
        max_image_pixels=MAX_PIXELS,
        max_concurrent_generations=4,
    )
    index = build_index(settings, indexed_records())
    with Assistant(settings, index=index) as assistant:
        app = create_app(settings, assistant=assistant, web=False)
        with running(app) as url:
            yield Server(url, app.state.chat_service, index)
    index.close()


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with an OpenAI-style JSON error body; returns the error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert "code" in error
    if code is not None:
        assert error["code"] == code, error
    return error


def chat(client: httpx.Client, *messages: dict[str, Any], **extra: Any) -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json={"model": "medgraph", "messages": list(messages), **extra.pop("body", {})},
        **extra,
    )


def assert_citations_resolve(server: Server, body: dict[str, Any]) -> None:
    """One citation per record, numbered 1..n; every cited passage is in its ingested chunk."""
    citations = body["citations"]
    assert citations, body
    numbers = {int(n) for n in re.findall(r"\[(\d+)\]", body["choices"][0]["message"]["content"])}
    assert numbers == {c["n"] for c in citations}
    assert [c["n"] for c in citations] == list(range(1, len(citations) + 1))
    assert len({c["source_id"] for c in citations}) == len(citations)  # one per record
    for citation in citations:
        chunks = {c.chunk_id: c for c in server.index.get_chunks(citation["source_id"])}
        assert citation["quote"] in chunks[citation["chunk_id"]].text
        assert citation["reference"].startswith(f"[{citation['n']}]")
        passages = citation["passages"]
        first = {"chunk_id": citation["chunk_id"], "quote": citation["quote"]}
        assert passages and {k: passages[0][k] for k in first} == first
        assert passages[0]["span"] == citation["span"]
        for passage in passages:
            assert passage["quote"] in chunks[passage["chunk_id"]].text


# --- auth -----------------------------------------------------------------------------------


def test_requests_without_a_valid_key_get_401(server: Server) -> None:
    for path in ("/v1/health", "/v1/models", "/v1/search?q=cancer"):
        response = httpx.get(server.url + path)
        assert_error(response, 401, "invalid_api_key")
        assert response.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer nope"})
    assert "invalid API key" in assert_error(wrong, 401)["message"]
    basic = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Basic {KEY_A}"})
    assert_error(basic, 401)
    unauthenticated_chat = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "medgraph", "messages": [user_message(QUESTION)]},
    )
    assert_error(unauthenticated_chat, 401)
    with server.openai("not-a-key") as client, pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_both_keys_are_accepted_and_models_lists_medgraph(server: Server) -> None:
    for key in (KEY_A, KEY_B):
        with server.client(key) as client:
            assert client.get("/v1/health").json()["status"] == "ok"
    with server.openai(KEY_B) as client:
        models = client.models.list()
    assert [m.id for m in models.data] == ["medgraph"]
    assert (models.data[0].model_extra or {})["engine"] == "extractive"


def test_api_keys_namespace_threads(server: Server) -> None:
    """The same conversation id under two keys is two threads: neither reads the other's."""
    conversation = "shared-name"
    with server.client(KEY_A) as alpha, server.client(KEY_B) as bravo:
        first = chat(alpha, user_message(QUESTION), headers={"X-Conversation-Id": conversation})
        assert first.status_code == 200, first.text
        second_question = dev_questions(2)[1]["question"]
        second = chat(bravo, user_message(second_question), body={"user": conversation})
        assert second.status_code == 200, second.text
    assert server.human_texts(conversation, KEY_A) == [QUESTION]
    assert server.human_texts(conversation, KEY_B) == [second_question]
    assert first.json()["conversation_id"] == second.json()["conversation_id"] == conversation


# --- limits ---------------------------------------------------------------------------------


def test_body_over_the_limit_is_413(server: Server) -> None:
    padding = "x" * (MAX_BODY + 10)
    with server.client() as client:
        response = chat(client, user_message(padding))
        assert_error(response, 413, "request_too_large")

        def chunked() -> Iterator[bytes]:  # no Content-Length: the server must count
            yield b'{"model": "medgraph", "messages": [{"role": "user", "content": "'
            for _ in range(MAX_BODY // 65536 + 2):
                yield b"y" * 65536
            yield b'"}]}'

        response = client.post(
            "/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"}
        )
        assert_error(response, 413, "request_too_large")


def test_image_over_the_pixel_limit_is_413(server: Server) -> None:
    with server.client() as client:
        response = chat(client, user_message(QUESTION, png_data_url(2000, 1500)))
    error = assert_error(response, 413, "image_too_large")
    assert "3000000 pixels" in error["message"]
    # Past Pillow's own decompression-bomb guard: still 413, never a decode attempt.
    bomb = base64.b64encode(png_header_only(40_000, 40_000)).decode()
    with server.client() as client:
        response = chat(client, user_message(QUESTION, f"data:image/png;base64,{bomb}"))
    error = assert_error(response, 413, "image_too_large")
    assert "1600000000 pixels" in error["message"]


def test_full_generation_gate_is_429_with_retry_after(tmp_path: Path) -> None:
    """One slot, no queueing: a second chat while the first holds the slot gets 429, while the
    event loop keeps answering other requests."""
    settings = build_settings(
        tmp_path, max_concurrent_generations=1, queue_wait_seconds=0, retry_after_seconds=7
    )
    index = build_index(settings, indexed_records(10))
    held = HeldIndex(index)
    with Assistant(settings, index=held) as assistant:
        app = create_app(settings, assistant=assistant, web=False)
        with running(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            with ThreadPoolExecutor(1) as pool:
                first = pool.submit(chat, client, user_message(QUESTION))
                assert held.entered.wait(timeout=30)
                started = time.perf_counter()
                health = client.get("/v1/health").json()
                assert time.perf_counter() - started < 2.0  # the loop is not blocked
                assert health["generations"] == {"active": 1, "waiting": 0, "limit": 1}
                second = chat(client, user_message("Is aspirin useful after stroke?"))
                error = assert_error(second, 429, "generation_slots_full")
                assert second.headers["retry-after"] == "7"
                assert "retry in 7 s" in error["message"]
                streamed = chat(client, user_message(QUESTION), body={"stream": True})
                assert_error(streamed, 429)
                held.release.set()
                assert first.result().status_code == 200
            assert client.get("/v1/health").json()["generations"]["active"] == 0
            assert chat(client, user_message("Is aspirin useful?")).status_code == 200
    index.close()


# --- bad payloads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"model": "medgraph"}, 400, "invalid_request", "messages"),
        ({"model": "medgraph", "messages": "hello"}, 400, "invalid_request", "messages"),
        ({"model": "medgraph", "messages": []}, 400, "invalid_request", "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "invalid_request", None),
        ({"messages": [{"role": "user", "content": 42}]}, 400, "invalid_request", None),
        (
            {"messages": [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]},
            400,
            "invalid_request",
            None,
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "stream": "maybe"}, 400, None, None),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "invalid_last_message", None),
        ({"messages": [{"role": "user", "content": "   "}]}, 400, "empty_question", None),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404, None, "model"),
    ],
)
def test_malformed_requests_are_4xx_json(
    server: Server, body: dict[str, Any], status: int, code: str | None, param: str | None
) -> None:
    with server.client() as client:
        response = client.post("/v1/chat/completions", json=body)
    error = assert_error(response, status, code)
    if param is not None:
        assert error["param"] == param


@pytest.mark.parametrize(
    ("url", "code", "words"),
    [
        ("https://example.org/xray.png", "unsupported_image_url", "only data URLs"),
        ("http://127.0.0.1/x.png?sig=secret", "unsupported_image_url", "only data URLs"),
        ("file:///etc/passwd", "unsupported_image_url", "only data URLs"),
        ("data:image/png;base64,@@not base64@@", "invalid_image", "base64"),
        ("data:image/png;base64", "invalid_image", "','"),
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", "invalid_image", "image 1"),
    ],
)
def test_bad_images_are_400(server: Server, url: str, code: str, words: str) -> None:
    with server.client() as client:
        response = chat(client, user_message(QUESTION, url))
    error = assert_error(response, 400, code)
    assert words in error["message"]
    assert "secret" not in error["message"]


def test_not_json_unknown_paths_and_bad_search_are_json_errors(server: Server) -> None:
    with server.client() as client:
        response = client.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert_error(response, 400, "invalid_request")
        assert_error(client.get("/v1/nothing-here"), 404, "unknown_endpoint")
        assert_error(client.get("/v1/search", params={"q": "cancer", "k": 0}), 400, "invalid_k")
        assert_error(client.get("/v1/search"), 400, "invalid_request")
        assert_error(client.get("/v1/search", params={"q": "  "}), 400)
        assert_error(client.post("/v1/ingest"), 400, "invalid_request")
        assert_error(client.get("/v1/chat/completions"), 405)
        bad_id = chat(client, user_message(QUESTION), headers={"X-Conversation-Id": "a b/../c"})
        assert_error(bad_id, 400, "invalid_conversation_id")


def test_cors_is_off_by_default(server: Server) -> None:
    with server.client() as client:
        response = client.get("/v1/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_only_configured_origins(tmp_path: Path) -> None:
    settings = build_settings(tmp_path, cors_origins="https://ok.example", api_keys=KEY_A)
    index = build_index(settings, indexed_records(5))
    with Assistant(settings, index=index) as assistant:
        app = create_app(settings, assistant=assistant, web=False)
        with running(app) as url:
            preflight = {"Access-Control-Request-Method": "POST"}
            allowed = httpx.options(
                url + "/v1/chat/completions", headers={"Origin": "https://ok.example", **preflight}
            )
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "https://ok.example"
            refused = httpx.options(
                url + "/v1/chat/completions", headers={"Origin": "https://no.example", **preflight}
            )
            assert "access-control-allow-origin" not in refused.headers
    index.close()


# --- answers ----------------------------------------------------------------------------------


def test_completion_carries_cited_answer_and_extras(server: Server) -> None:
    with server.openai() as client:
        completion = client.chat.completions.create(
            model="medgraph",
            messages=[
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": QUESTION},
            ],
        )
    body = completion.model_dump()
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "stop"
    assert body["route"][0] == "triage" and body["route"][-1] == "finalize"
    assert 0.0 <= body["verification"]["supported_fraction"] <= 1.0
    assert 0.0 <= body["verification"]["relevant_fraction"] <= 1.0
    assert body["engine"] == "extractive" and "clinical" in body["notice"]
    assert_citations_resolve(server, body)
    pmids = {r["pmid"] for r in indexed_records()}
    assert {c["source_id"] for c in body["citations"]} <= pmids
    expected = dev_questions(1)[0]["pmid"]
    assert expected in {c["source_id"] for c in body["citations"]}


def test_streaming_parsed_by_the_openai_client(server: Server) -> None:
    conversation = "stream-conversation"
    with server.openai() as client:
        stream = client.chat.completions.create(
            model="medgraph",
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
            extra_headers={"X-Conversation-Id": conversation},
        )
        chunks = list(stream)
    assert len(chunks) >= 3
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    extras = last.model_extra or {}
    body = {"choices": [{"message": {"content": text}}], **extras}
    assert_citations_resolve(server, body)
    assert extras["route"][-1] == "finalize" and "verification" in extras
    # The stored answer is exactly the streamed text.
    messages = server.service.thread_messages(server.service.api_thread_id(conversation, KEY_A))
    assert str(messages[-1].text) == text
    assert server.human_texts(conversation) == [QUESTION]


def test_raw_stream_has_progress_comments_and_done(server: Server) -> None:
    with (
        server.client() as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "medgraph", "messages": [user_message(QUESTION)], "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-conversation-id"]
        lines = [line for line in response.iter_lines() if line]
    progress = [json.loads(line.split(" ", 2)[2]) for line in lines if line.startswith(": ")]
    events = [p["event"] for p in progress]
    assert events[0] == "triage" and "retrieve" in events and "verify" in events
    data = [line for line in lines if line.startswith("data: ")]
    assert data[-1] == "data: [DONE]"
    assert all(json.loads(line[6:])["object"] == "chat.completion.chunk" for line in data[:-1])
    first_content = next(i for i, line in enumerate(lines) if '"content": "' in line and i > 0)
    assert all(not line.startswith(": ") for line in lines[first_content:])


def test_text_deltas_rebuild_the_text_exactly() -> None:
    text = "First claim [1].  Second\nclaim [2] ends here.\n\n"
    pieces = text_deltas(text, words=2)
    assert "".join(pieces) == text and len(pieces) > 2
    assert text_deltas("") == []


def test_images_png_jpeg_and_dicom_are_attached(server: Server) -> None:
    images = shared_data_dir() / "images"
    attachments = [
        data_url(images / "nih-cxr14" / "00000001_000.png", "image/png"),
        data_url(images / "bccd" / "BloodImage_00000.jpg", "image/jpeg"),
        data_url(images / "dicom" / "ct_blank_slice.dcm", "application/dicom"),
    ]
    conversation = "with-images"
    with server.client() as client:
        response = chat(
            client,
            user_message("What does this chest radiograph show?", *attachments),
            headers={"X-Conversation-Id": conversation},
        )
    assert response.status_code == 200, response.text
    state = server.service.assistant.graph.get_state(
        {"configurable": {"thread_id": server.service.api_thread_id(conversation, KEY_A)}}
    )
    refs = state.values["images"]
    assert [ref.image_id for ref in refs] == ["img-1", "img-2", "img-3"]
    assert refs[2].description.startswith("CT")  # DICOM metadata survived the upload
    # state keeps ids and hashes, never the request's file paths or names
    assert all("path" not in ref.model_dump() and "name" not in ref.model_dump() for ref in refs)


def test_follow_up_continues_the_thread_and_earlier_messages_are_not_replayed(
    server: Server,
) -> None:
    follow_up = "What about perforation formation?"
    with server.client() as client:
        first = chat(client, user_message(QUESTION))
        conversation = first.headers["x-conversation-id"]
        assert first.json()["conversation_id"] == conversation
        second = chat(
            client,
            user_message(QUESTION),
            {"role": "assistant", "content": first.json()["choices"][0]["message"]["content"]},
            user_message(follow_up),
            headers={"X-Conversation-Id": conversation},
        )
    assert second.status_code == 200, second.text
    assert server.human_texts(conversation) == [QUESTION, follow_up]


def test_ingest_upload_then_search_finds_the_new_document(server: Server) -> None:
    known = {r["pmid"] for r in indexed_records()}
    new_record = next(r for r in corpus_records(600)[500:] if r["pmid"] not in known)
    payload = json.dumps(new_record).encode() + b"\n"
    query = new_record["sections"][0]["text"][:120]
    with server.client() as client:
        before = client.get("/v1/search", params={"q": query, "k": 5}).json()["data"]
        assert new_record["pmid"] not in {hit["source_id"] for hit in before}
        job = ingest_upload(client.post, client.get, "../../evil name.jsonl", payload)
        assert job["state"] == "succeeded" and job["filename"] == "evil_name.jsonl", job
        body = job["report"]
        assert body["documents_added"] == 1 and body["ok"] and body["chunks_added"] >= 1
        assert body["index_documents"] == len(known) + 1
        hits = client.get("/v1/search", params={"q": query, "k": 5}).json()["data"]
        assert hits[0]["source_id"] == new_record["pmid"]
        assert hits[0]["text"] in record_text(new_record)
        assert hits[0]["url"] == f"https://pubmed.ncbi.nlm.nih.gov/{new_record['pmid']}/"
        broken = ingest_upload(client.post, client.get, "bad.jsonl", b"{oops\n")
        assert broken["state"] == "failed" and not broken["report"]["ok"]
        assert broken["error"].startswith("nothing was added: bad.jsonl: line 1 is not valid JSON")
        assert broken["report"]["failures"][0]["path"] == "bad.jsonl"
        assert_error(client.post("/v1/ingest", files={"file": ("e.txt", b"", "text/plain")}), 400)


def test_twenty_concurrent_conversations_stay_isolated(server: Server) -> None:
    questions = [q["question"] for q in dev_questions(20)]
    follow_ups = [f"Follow-up {i}: how strong is that evidence?" for i in range(20)]
    conversations = [f"iso-{i:02d}" for i in range(20)]
    barrier = threading.Barrier(20)

    def converse(i: int) -> list[dict[str, Any]]:
        bodies = []
        with server.openai() as client:
            for text in (questions[i], follow_ups[i]):
                barrier.wait(timeout=60)  # every round starts all 20 chats together
                completion = client.chat.completions.create(
                    model="medgraph",
                    messages=[{"role": "user", "content": text}],
                    extra_headers={"X-Conversation-Id": conversations[i]},
                )
                bodies.append(completion.model_dump())
        return bodies

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(converse, range(20)))
    for i, bodies in enumerate(results):
        assert server.human_texts(conversations[i]) == [questions[i], follow_ups[i]]
        assert all(body["conversation_id"] == conversations[i] for body in bodies)
    first_answers = [bodies[0]["choices"][0]["message"]["content"] for bodies in results]
    assert len(set(first_answers)) > 10  # different questions got their own answers
    assert server.service.gate.active == 0


class BrokenIndex:
    """An index whose every search fails as an unreachable Chroma server would."""

    def search(self, query: str, k: int = 10, mode: str = "hybrid", where: Any = None) -> Any:
        raise IndexUnavailableError("cannot reach the Chroma server at http://db:8001")


def test_index_failure_is_503_or_an_in_stream_error(tmp_path: Path) -> None:
    settings = build_settings(tmp_path)
    with Assistant(settings, index=BrokenIndex()) as assistant:  # type: ignore[arg-type]
        app = create_app(settings, assistant=assistant, web=False)
        with running(app) as url:
            response = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "medgraph", "messages": [user_message(QUESTION)]},
                timeout=60,
            )
            assert "Chroma server" in assert_error(response, 503, "index_unavailable")["message"]
            health = httpx.get(f"{url}/v1/health").json()
            assert health["status"] == "ok"  # a custom searcher has no stats to report
            with openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
                stream = client.chat.completions.create(
                    model="medgraph", messages=[{"role": "user", "content": QUESTION}], stream=True
                )
                with pytest.raises(openai.APIError, match="Chroma server"):
                    list(stream)
            assert app.state.chat_service.gate.active == 0
