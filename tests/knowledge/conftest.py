"""Fixtures shared by the knowledge tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medgraph.knowledge.readers import read_file
from medgraph.knowledge.types import Document
from tests.support import milvus_lite_server

STORES = ("chroma", "milvus-lite", "milvus-server")
"""The stores the index's behavioural tests run over: embedded Chroma, Milvus Lite in this
process, and Milvus Lite's gRPC server in its own process (the path a cluster's clients take)."""


@pytest.fixture(scope="module")
def corpus(data_dir: Path) -> dict[str, Document]:
    """The shared PubMedQA abstracts by PMID."""
    documents = read_file(data_dir / "pubmedqa" / "corpus.jsonl")
    return {document.source_id: document for document in documents}


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Milvus Lite gRPC server on 127.0.0.1 for the whole session."""
    with milvus_lite_server(tmp_path_factory.mktemp("milvus-server")) as uri:
        yield uri


@pytest.fixture(params=STORES)
def store_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """KnowledgeSettings fields selecting one of :data:`STORES` (a fresh collection each test)."""
    return store_fields(request, request.param)


def store_fields(request: pytest.FixtureRequest, store: str) -> dict[str, Any]:
    """The settings fields of ``store``; the server case names a collection of its own."""
    if store == "chroma":
        return {}
    if store == "milvus-lite":
        return {"store": "milvus"}
    uri = request.getfixturevalue("milvus_uri")
    return {"store": "milvus", "milvus_uri": uri, "collection": f"t{uuid.uuid4().hex}"}
