"""Deliver item 2 of issue 11: uploaded records are private to the uploading key, or shared.

With ``server.upload_visibility = "private"`` (the default) a search or chat of one key never
retrieves or cites a record uploaded with another key; the uploader finds its own, and the
operator's corpus is seen by all. With ``"shared"`` every key retrieves every upload.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from medgraph.assistant import Assistant
from medgraph.server.app import create_app
from tests.server.api_support import (
    build_index,
    build_settings,
    indexed_records,
    ingest_upload,
    running,
)

UPLOADER = "uploader-key-0123456"
OTHER = "other-key-0123456789"
# Made-up words found in no corpus record: only uploads can match them.
UNIQUE = "quellitrine"
SHARED_TERM = "zorbaxilate"
# The other key's uploads, all about SHARED_TERM: they fill the top candidates of the uploader's
# SHARED_TERM search, which must still return k visible passages.
CROWD = 30


@dataclass(frozen=True)
class Server:
    url: str
    visibility: str

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )


def _records(prefix: str, count: int, extra: str = "") -> bytes:
    records = [
        {
            "id": f"{prefix}-{number}",
            "title": f"{SHARED_TERM.title()} for migraine ({prefix} trial {number})",
            "text": f"{SHARED_TERM} {extra} relieved migraine headache within two hours in "
            f"{prefix} trial {number}.",
        }
        for number in range(count)
    ]
    return "".join(json.dumps(record) + "\n" for record in records).encode()


@pytest.fixture(scope="module", params=["private", "shared"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    visibility = str(request.param)
    root = tmp_path_factory.mktemp(f"visibility-{visibility}")
    settings = build_settings(root, ingest_keys=[UPLOADER, OTHER], upload_visibility=visibility)
    index = build_index(settings, indexed_records(10))
    with Assistant(settings, index=index) as assistant:
        app = create_app(settings, assistant=assistant, web=False)
        with running(app) as url:
            found = Server(url, visibility)
            uploads = ((UPLOADER, _records("mine", 1, UNIQUE)), (OTHER, _records("crowd", CROWD)))
            for key, payload in uploads:
                with found.client(key) as client:
                    job = ingest_upload(client.post, client.get, "upload.jsonl", payload)
                    assert job["state"] == "succeeded", job
            yield found
    index.close()


def _search(client: httpx.Client, query: str, k: int = 5) -> list[str]:
    response = client.get("/v1/search", params={"q": query, "k": k})
    assert response.status_code == 200, response.text
    return [hit["source_id"] for hit in response.json()["data"]]


def _cited(client: httpx.Client, question: str) -> list[str]:
    response = client.post(
        "/v1/chat/completions",
        json={"model": "medgraph", "messages": [{"role": "user", "content": question}]},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return [citation["source_id"] for citation in body["citations"]]


def test_search_finds_other_keys_uploads_only_when_shared(server: Server) -> None:
    with server.client(UPLOADER) as client:
        assert "mine-0" in _search(client, f"{UNIQUE} migraine")
    with server.client(OTHER) as client:
        assert ("mine-0" in _search(client, f"{UNIQUE} migraine")) == (
            server.visibility == "shared"
        )


def test_search_returns_k_visible_passages_past_hidden_uploads(server: Server) -> None:
    with server.client(UPLOADER) as client:
        hits = _search(client, f"{SHARED_TERM} migraine headache", k=5)
    crowd = [source for source in hits if source.startswith("crowd-")]
    assert len(hits) == 5
    if server.visibility == "private":
        # 30 hidden uploads outrank the rest: the uploader's own and corpus passages fill k.
        assert not crowd and "mine-0" in hits
    else:
        assert crowd


def test_chat_cites_other_keys_uploads_only_when_shared(server: Server) -> None:
    question = f"Does {UNIQUE} relieve migraine headache?"
    with server.client(UPLOADER) as client:
        assert "mine-0" in _cited(client, question)
    with server.client(OTHER) as client:
        assert ("mine-0" in _cited(client, question)) == (server.visibility == "shared")
