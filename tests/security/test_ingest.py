"""Cases 2 and 3 of issue 11: who may change the literature, and ingest off the request path;
finding 4 of issue 26: a job's state says whether the upload was taken.

Before: any key's ``POST /v1/ingest`` of ``{"pmid": "<indexed PMID>", "sections": [...bleach...]}``
reported ``documents_updated: 1`` and other keys' answers quoted it under the real PMID; a record's
``url`` of ``javascript:alert(1)`` came back in ``citations[].url``; uploaded files got the
server's temp path as source id. While one key ingested 400 KB, search and chat waited 38 s and
``/v1/health`` blocked the event loop; one request could add about 30k chunks. A JSONL upload
whose line 3 was not JSON gave a job in state ``succeeded`` (with ``report.ok`` false and nothing
added).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import numpy as np
import pytest

from medgraph.assistant import Assistant
from medgraph.knowledge.index import LiteratureIndex
from medgraph.server.app import create_app
from tests.knowledge.index_support import HashEmbedder, corpus_records, write_jsonl
from tests.server.api_support import (
    build_settings,
    indexed_records,
    ingest_upload,
    running,
)

READER = "reader-key-0123456"
INGESTER = "ingester-key-0123456"
OTHER_INGESTER = "ingester-key-6543210"


class HeldEmbedder(HashEmbedder):
    """Embeds for ingest jobs only while ``flowing`` is set: a test can hold an ingest open
    (the extractive engine's own sentence embeddings are never held)."""

    def __init__(self) -> None:
        super().__init__()
        self.flowing = threading.Event()
        self.flowing.set()
        self.waiting = threading.Event()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        ingesting = threading.current_thread().name.startswith("medgraph-ingest")
        if ingesting and not self.flowing.is_set():
            self.waiting.set()
            assert self.flowing.wait(timeout=120), "the test never let the ingest go on"
        return super().embed_documents(texts)


class Api:
    def __init__(self, url: str, embedder: HeldEmbedder, operator_pmids: list[str]) -> None:
        self.url = url
        self.embedder = embedder
        self.operator_pmids = operator_pmids

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )

    def upload(self, key: str, name: str, payload: bytes) -> dict[str, Any]:
        with self.client(key) as client:
            return ingest_upload(client.post, client.get, name, payload)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("ingest")
    settings = build_settings(
        root,
        api_keys=[READER],
        ingest_keys=[INGESTER, OTHER_INGESTER],
        max_ingest_bytes=64 * 1024,
        max_ingest_documents=30,
        max_ingest_jobs_per_key=1,
    )
    embedder = HeldEmbedder()
    index = LiteratureIndex(settings.knowledge, embedder=embedder)
    records = indexed_records(20)
    index.ingest([write_jsonl(root / "operator.jsonl", records)], progress=False)  # the operator's
    with Assistant(settings, index=index) as assistant:
        app = create_app(settings, assistant=assistant, web=False)
        with running(app) as url:
            yield Api(url, embedder, [str(r["pmid"]) for r in records])
    index.close()


def _jsonl(*records: dict[str, Any]) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def _chat(client: httpx.Client, question: str) -> dict[str, Any]:
    response = client.post(
        "/v1/chat/completions",
        json={"model": "medgraph", "messages": [{"role": "user", "content": question}]},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_reader_key_cannot_upload(api: Api) -> None:
    with api.client(READER) as client:
        response = client.post("/v1/ingest", files={"file": ("a.jsonl", b"{}\n", "text/plain")})
    assert response.status_code == 403 and response.json()["error"]["code"] == "ingest_not_allowed"


def test_an_upload_cannot_replace_an_operator_record(api: Api) -> None:
    pmid = api.operator_pmids[0]
    poison = {
        "pmid": pmid,
        "title": "Cure",
        "sections": [{"text": "Stroke is cured by drinking bleach daily."}],
    }
    job = api.upload(INGESTER, "poison.jsonl", _jsonl(poison))
    assert job["state"] == "failed" and "nothing was added" in job["error"], job
    report = job["report"]
    assert report["documents_refused"] == 1 and report["documents_updated"] == 0
    with api.client(READER) as client:
        hits = client.get("/v1/search", params={"q": "drinking bleach daily", "k": 5}).json()[
            "data"
        ]
        assert all("bleach" not in hit["text"] for hit in hits)
        original = next(r for r in indexed_records(20) if str(r["pmid"]) == pmid)
        answer = _chat(client, original["sections"][0]["text"][:200])
        assert "bleach" not in json.dumps(answer)


def test_a_file_with_a_line_that_is_not_json_is_a_failed_job(api: Api) -> None:
    good = [{"id": f"ok-{i}", "text": f"Good record {i} about statins."} for i in (1, 2)]
    payload = _jsonl(*good) + b"{this line is not json\n" + _jsonl({"id": "ok-4", "text": "More."})
    job = api.upload(INGESTER, "broken.jsonl", payload)
    assert job["state"] == "failed", job
    assert "broken.jsonl: line 3 is not valid JSON" in job["error"], job
    assert job["report"]["ok"] is False and job["report"]["documents_added"] == 0


def test_a_job_with_some_documents_refused_is_partial(api: Api) -> None:
    text = "Warfarin dosing guided by genotype in atrial fibrillation."
    taken = {"pmid": "99000001", "title": "Warfarin", "sections": [{"text": text}]}
    refused = {"pmid": api.operator_pmids[1], "title": "Cure", "sections": [{"text": "Bleach."}]}
    job = api.upload(INGESTER, "mixed.jsonl", _jsonl(taken, refused))
    assert job["state"] == "partial", job
    assert "1 of 2 documents name records of another origin" in job["error"], job
    report = job["report"]
    assert report["ok"] and report["documents_added"] == 1 and report["documents_refused"] == 1
    clean = api.upload(INGESTER, "clean.jsonl", _jsonl({"id": "all-new", "text": "Heparin."}))
    assert clean["state"] == "succeeded" and clean["error"] is None, clean


def test_links_only_to_known_hosts_and_provenance_in_citations(api: Api) -> None:
    links = {
        "upl-js": "javascript:alert(1)",
        "upl-evil": "https://evil.example/phish",
        "upl-pmc": "https://pmc.ncbi.nlm.nih.gov/articles/PMC1/",
    }
    records = [
        {
            "id": source,
            "title": f"Aspirin and migraine relief ({number})",
            "url": url,
            "text": f"Aspirin relieved migraine headache within two hours in trial {number}.",
        }
        for number, (source, url) in enumerate(links.items(), start=1)
    ]
    job = api.upload(INGESTER, "links.jsonl", _jsonl(*records))
    assert job["state"] == "succeeded" and job["report"]["documents_added"] == 3, job
    with api.client(INGESTER) as client:  # uploads are private to their key by default
        hits = client.get("/v1/search", params={"q": "aspirin migraine headache", "k": 5}).json()[
            "data"
        ]
        urls = {hit["source_id"]: hit["url"] for hit in hits}
        assert urls.get("upl-js") is None and urls.get("upl-evil") is None
        assert urls.get("upl-pmc") == "https://pmc.ncbi.nlm.nih.gov/articles/PMC1/"
        answer = _chat(client, "Does aspirin relieve migraine headache?")
    citations = answer["citations"]
    assert citations, answer
    for citation in citations:
        assert citation["url"] is None or citation["url"].startswith("https://")
        assert "javascript" not in (citation["url"] or "") and "evil" not in (citation["url"] or "")
        if citation["source_id"].startswith("upl-"):
            assert citation["provenance"] == "upload" and "uploaded" in citation["reference"]
        else:
            assert citation["provenance"] == "corpus"


def test_uploaded_files_get_no_server_path_and_jobs_are_private(api: Api) -> None:
    text = b"Metformin lowered HbA1c in adults with type 2 diabetes over twelve weeks of treatment."
    job = api.upload(INGESTER, "notes.txt", text)
    assert job["state"] == "succeeded", job
    with api.client(INGESTER) as client:
        hits = client.get(
            "/v1/search", params={"q": "metformin HbA1c twelve weeks", "k": 3}
        ).json()["data"]
    source = hits[0]["source_id"]
    assert source.startswith("upload:") and source.endswith(":notes.txt")
    assert "/tmp" not in source and "medgraph-upload" not in source
    assert "/tmp" not in json.dumps(job)
    with api.client(OTHER_INGESTER) as other:
        assert other.get(f"/v1/ingest/{job['id']}").status_code == 404


def test_upload_limits_per_job_and_per_key(api: Api) -> None:
    with api.client(INGESTER) as client:
        big = client.post("/v1/ingest", files={"file": ("big.txt", b"x " * 40_000, "text/plain")})
        assert big.status_code == 413
    many = [{"id": f"many-{i}", "text": f"Record number {i} about statins."} for i in range(31)]
    job = api.upload(INGESTER, "many.jsonl", _jsonl(*many))
    assert job["state"] == "failed" and "limit of 30" in job["error"]
    api.embedder.flowing.clear()
    try:
        with api.client(INGESTER) as client:
            first = client.post(
                "/v1/ingest",
                files={"file": ("one.txt", b"Statins and stroke prevention.", "text/plain")},
            )
            assert first.status_code == 202
            second = client.post(
                "/v1/ingest", files={"file": ("two.txt", b"Second file text.", "text/plain")}
            )
            assert second.status_code == 429 and second.json()["error"]["code"] == "ingest_quota"
    finally:
        api.embedder.flowing.set()
    with api.client(INGESTER) as client:
        ingest_upload(lambda *a, **k: first, client.get, "one.txt", b"")  # wait for it to finish


def _latencies(client: httpx.Client, questions: Sequence[str]) -> list[float]:
    times = []
    for question in questions:
        started = time.perf_counter()
        _chat(client, question)
        times.append(time.perf_counter() - started)
    return times


def test_chat_and_health_keep_answering_while_an_ingest_is_held_open(api: Api) -> None:
    questions = [str(r["sections"][0]["text"][:150]) for r in indexed_records(20)[:10]]
    with api.client(READER) as reader:
        _latencies(reader, questions[:2])  # warm up
        baseline = _latencies(reader, questions)
        api.embedder.flowing.clear()
        api.embedder.waiting.clear()
        try:
            extra = [
                r for r in corpus_records(400)[300:] if str(r["pmid"]) not in api.operator_pmids
            ][:20]
            with api.client(INGESTER) as ingester:
                accepted = ingester.post(
                    "/v1/ingest", files={"file": ("more.jsonl", _jsonl(*extra), "text/plain")}
                )
            assert accepted.status_code == 202
            assert api.embedder.waiting.wait(timeout=60), "the ingest never reached embedding"
            during = _latencies(reader, questions)
            started = time.perf_counter()
            health = reader.get("/v1/health")
            health_seconds = time.perf_counter() - started
            job = reader.get(f"/v1/ingest/{accepted.json()['id']}")
        finally:
            api.embedder.flowing.set()
    # Medians, not p95: of ten requests the p95 is the slowest one, and one scheduler pause on a
    # shared CI machine decides it. A chat blocked behind the held ingest would not return at all.
    median_before = statistics.median(baseline)
    median_during = statistics.median(during)
    print(f"chat median {median_before:.3f} s without ingest, {median_during:.3f} s during one")
    assert median_during < 2 * median_before, (baseline, during)
    assert health.status_code == 200 and health.json()["ingest_jobs"]["active"] >= 1
    assert health_seconds < 2.0
    assert job.status_code == 404  # a reader cannot see the ingester's job
