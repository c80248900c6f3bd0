"""``/v1/ingest``, ``/v1/search`` and ``/v1/health``: the literature index over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from medgraph.server.auth import INGESTER
from medgraph.server.errors import ApiError
from medgraph.server.ingest_jobs import IngestQuotaError
from medgraph.server.openai_api import api_key_of, service_of

router = APIRouter(prefix="/v1")


@router.post("/ingest", status_code=202)
async def ingest(
    request: Request,
    file: Annotated[UploadFile, File(description="A literature file (JSONL, XML, PDF, text).")],
    format: Annotated[str, Form(description="auto, pubmedqa, pubmed-xml, pdf, text, jsonl.")] = (
        "auto"
    ),
) -> JSONResponse:
    """Queue one uploaded file for ingest (needs an ingest key); 202 with the job.

    Poll ``GET /v1/ingest/{id}`` for its state and, once finished, its report. An upload adds
    records and may replace its own, never a record of the operator's corpus or another key.
    """
    if getattr(request.state, "api_role", None) != INGESTER:
        raise ApiError(
            403,
            "this key may read but not upload literature; use a key from MEDGRAPH_INGEST_KEYS",
            "ingest_not_allowed",
        )
    service = service_of(request)
    largest = service.settings.server.max_ingest_bytes
    data = await file.read(largest + 1)
    if not data:
        raise ApiError(400, "the uploaded file is empty", "empty_upload", param="file")
    if len(data) > largest:
        raise ApiError(
            413,
            f"the file is larger than the ingest limit of {largest} bytes; split it "
            "(or raise server.max_ingest_bytes)",
            "upload_too_large",
            param="file",
        )
    try:
        job = service.submit_ingest(
            data, file.filename or "upload.txt", format, api_key_of(request)
        )
    except IngestQuotaError as error:
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
        raise ApiError(429, str(error), "ingest_quota", headers=headers) from error
    return JSONResponse(job.public(), status_code=202, headers={"Location": f"/v1/ingest/{job.id}"})


@router.get("/ingest/{job_id}")
async def ingest_job(request: Request, job_id: str) -> dict[str, Any]:
    """The state of an ingest job of this key, and its report once it has finished."""
    job = service_of(request).ingest_job(job_id, api_key_of(request))
    if job is None:
        raise ApiError(404, f"no ingest job {job_id[:60]!r} for this key", "unknown_ingest_job")
    return job.public()


@router.get("/search")
async def search(
    request: Request,
    q: Annotated[str, Query(description="Search words.")],
    k: Annotated[int, Query(description="How many passages.")] = 5,
) -> dict[str, Any]:
    """Hybrid (dense + BM25) search of the index: passages with their source records.

    Uploads of other keys are left out unless ``server.upload_visibility`` is ``shared``.
    """
    service = service_of(request)
    largest = service.settings.server.max_search_results
    if not 1 <= k <= largest:
        raise ApiError(400, f"k must be between 1 and {largest}, got {k}", "invalid_k", param="k")
    hits = await service.search(q, k, api_key_of(request))
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
    return await service_of(request).health()
