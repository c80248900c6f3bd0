"""``/v1/ingest``, ``/v1/search`` and ``/v1/health``: the literature index over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from medgraph.server.errors import ApiError
from medgraph.server.openai_api import service_of

router = APIRouter(prefix="/v1")


@router.post("/ingest")
async def ingest(
    request: Request,
    file: Annotated[UploadFile, File(description="A literature file (JSONL, XML, PDF, text).")],
    format: Annotated[str, Form(description="auto, pubmedqa, pubmed-xml, pdf, text, jsonl.")] = (
        "auto"
    ),
) -> dict[str, Any]:
    """Add one uploaded file to the index; answers the ingest report (counts, failures)."""
    data = await file.read()
    if not data:
        raise ApiError(400, "the uploaded file is empty", "empty_upload", param="file")
    report = await service_of(request).ingest(data, file.filename or "upload.txt", fmt=format)
    return {"object": "ingest.report", **report}


@router.get("/search")
async def search(
    request: Request,
    q: Annotated[str, Query(description="Search words.")],
    k: Annotated[int, Query(description="How many passages.")] = 5,
) -> dict[str, Any]:
    """Hybrid (dense + BM25) search of the index: passages with their source records."""
    service = service_of(request)
    largest = service.settings.server.max_search_results
    if not 1 <= k <= largest:
        raise ApiError(400, f"k must be between 1 and {largest}, got {k}", "invalid_k", param="k")
    hits = await service.search(q, k)
    return {
        "object": "list",
        "query": q,
        "data": [
            {
                "rank": rank,
                "source_id": hit.source_id,
                "title": hit.document.title,
                "year": hit.document.year,
                "journal": hit.document.journal,
                "url": hit.document.link,
                "chunk_id": hit.chunk.chunk_id,
                "text": hit.chunk.text,
                "score": hit.score,
            }
            for rank, hit in enumerate(hits, start=1)
        ],
    }


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Engine, index size and generation slots in use."""
    return service_of(request).health()
