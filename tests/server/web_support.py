"""Helpers for the web chat page tests: a small real literature index, an extractive assistant,
the app built for the page (served by ``tests.server.api_support.running``).

The app comes from ``medgraph.server.app.create_app`` where that module exists; otherwise the page
is mounted on a bare FastAPI app through :class:`AssistantStreamer`, an adapter with the
``ChatService.stream`` signature.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from medgraph.assistant import Assistant
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import LiteratureIndex
from medgraph.settings import Settings
from tests.knowledge.index_support import HashEmbedder, corpus_records, write_jsonl
from tests.support import shared_data_dir

INDEXED_RECORDS = 40


class AssistantStreamer:
    """``ChatService.stream`` over an :class:`Assistant`; records the thread ids it was given."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.settings = assistant.settings
        self.threads: list[str] = []

    async def stream(
        self, question: str, images: list[Path], thread_id: str
    ) -> AsyncIterator[tuple[str, Any]]:
        self.threads.append(thread_id)
        async for item in self.assistant.astream(question, images, thread_id):
            yield item


def build_small_index(
    root: Path, records: int = INDEXED_RECORDS
) -> tuple[LiteratureIndex, set[str]]:
    """A real LiteratureIndex of the first ``records`` PubMedQA abstracts (hashing embedder)."""
    chosen = corpus_records(records)
    corpus = write_jsonl(root / "corpus.jsonl", chosen)
    index = LiteratureIndex(
        KnowledgeSettings(index_dir=root / "index"), embedder=HashEmbedder(dimension=512)
    )
    index.ingest([corpus], progress=False)
    return index, {str(record["pmid"]) for record in chosen}


def extractive_settings(home: Path) -> Settings:
    """Offline settings: extractive engine, checkpoints under ``home``."""
    settings = Settings(home=home)
    settings.models = settings.models.model_copy(update={"engine": "extractive"})
    return settings


def question_for(pmids: set[str]) -> dict[str, Any]:
    """The first PubMedQA dev question whose gold abstract is in ``pmids``."""
    from tests.graphs.support import dev_questions

    for item in dev_questions(1000):
        if str(item["pmid"]) in pmids:
            return item
    raise AssertionError("no dev question has its abstract among the indexed records")


def sample_image() -> Path:
    """A real chest radiograph PNG from the shared data."""
    images = sorted((shared_data_dir() / "images" / "nih-cxr14").glob("*.png"))
    assert images, "no PNG under ../shared/data/images/nih-cxr14"
    return images[0]


def build_app(assistant: Assistant) -> tuple[FastAPI, AssistantStreamer | None]:
    """The server app: ``create_app`` when the API module exists, else the page on a bare app."""
    try:
        from medgraph.server.app import create_app
    except ImportError:
        from medgraph.server.web import mount_chat_ui

        app = FastAPI()
        streamer = AssistantStreamer(assistant)
        mount_chat_ui(app, streamer)
        return app, streamer
    return create_app(assistant.settings, assistant=assistant), None


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=30, follow_redirects=True)


def pubmed_links(hrefs: Sequence[str]) -> set[str]:
    """PMIDs of the PubMed links among ``hrefs``."""
    import re

    found = set()
    for href in hrefs:
        match = re.fullmatch(r"https://pubmed\.ncbi\.nlm\.nih\.gov/(\d+)/?", href or "")
        if match:
            found.add(match.group(1))
    return found
