"""Uploaded literature ingested as background jobs, off the request path.

``POST /v1/ingest`` hands the file to :meth:`IngestJobs.submit`, which answers at once with a job;
one worker thread of its own (not the generation threads, never the event loop) runs the jobs in
turn, and ``GET /v1/ingest/{id}`` reads a job's state and, once it has finished, its report. The
index lets searches run while an ingest embeds, so chat and search keep answering.

States: ``queued``, ``running``, then ``succeeded`` (every document taken), ``partial`` (some
taken, some refused) or ``failed`` (nothing taken: an error, an unreadable file, no document, or
every document refused); see :func:`finished_state`.

Limits: bytes, documents and new passages per job; queued-or-running jobs and total uploaded
bytes per key. A job belongs to the key namespace that submitted it; other keys cannot see it.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from medgraph.errors import MedgraphError
from medgraph.knowledge.types import UPLOAD_ORIGIN_PREFIX, Document
from medgraph.server.scratch import ScratchSpace

logger = logging.getLogger(__name__)
JobState = Literal["queued", "running", "succeeded", "partial", "failed"]
FINISHED_STATES: tuple[JobState, ...] = ("succeeded", "partial", "failed")
_KEPT_FINISHED_JOBS = 200


class IngestQuotaError(MedgraphError):
    """A key has too many ingest jobs waiting or has uploaded its byte allowance."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class IngestLimits:
    """Bounds of uploads: per job and per key (see :class:`~medgraph.server.config`)."""

    max_bytes: int
    max_documents: int
    max_chunks: int
    max_jobs_per_key: int
    max_bytes_per_key: int


@dataclass
class IngestJob:
    """One upload's ingest: its state, timings and, once finished, its report (when the file
    was ingested) and ``error``: why it is ``failed`` or ``partial`` (:func:`finished_state`)."""

    id: str
    owner: str
    filename: str
    bytes: int
    state: JobState = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    report: dict[str, Any] | None = None
    error: str | None = None

    def public(self) -> dict[str, Any]:
        """The job as the API shows it (the owner's namespace left out)."""
        shown = asdict(self)
        del shown["owner"]
        return {"object": "ingest.job", **shown}


def finished_state(report: dict[str, Any]) -> tuple[JobState, str | None]:
    """A finished job's state from its ingest report (``IngestReport`` as a dict, with ``ok``),
    and why when it is not ``succeeded``.

    ``failed``: nothing of the upload is in the index (its file could not be read, held no
    document, or every document was refused); ``partial``: some documents were taken while
    others were refused (they name records of another origin) or a file could not be read;
    ``succeeded``: every document read was taken and every file read.
    """
    read, refused = report["documents"], report["documents_refused"]
    problems = [f"{failure['path']}: {failure['reason']}" for failure in report["failures"]]
    if refused:
        problems.append(
            f"{refused} of {read} documents name records of another origin (the operator's "
            "corpus or another key's uploads), which an upload cannot replace"
        )
    if read - refused <= 0:
        return "failed", "nothing was added: " + (
            "; ".join(problems) or "the file holds no documents; check it and the format given"
        )
    if problems:
        return "partial", "; ".join(problems) + "; the other documents were taken"
    return "succeeded", None


def upload_source_id(filename: str, owner: str) -> str:
    """The source id of a file uploaded without its own ids: ``upload:<owner>:<file name>``."""
    return f"{UPLOAD_ORIGIN_PREFIX}{owner}:{safe_filename(filename)}"


def safe_filename(filename: str) -> str:
    """The base name of an uploaded file with only safe characters (keeps the extension)."""
    name = Path(filename.replace("\\", "/")).name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name[:120] or "upload.txt"


class IngestJobs:
    """The job queue: ``submit`` returns at once; one worker thread ingests in order."""

    def __init__(
        self, ingest: Callable[..., Any], scratch: ScratchSpace, limits: IngestLimits
    ) -> None:
        """``ingest`` is the index's ``LiteratureIndex.ingest``; uploads wait in ``scratch``."""
        self._ingest = ingest
        self._scratch = scratch
        self.limits = limits
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medgraph-ingest")
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._bytes_by_owner: dict[str, int] = {}

    def close(self) -> None:
        """Stop taking jobs; wait for the running one (queued ones are dropped)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def active(self) -> int:
        """Jobs queued or running now."""
        with self._lock:
            return sum(job.state in ("queued", "running") for job in self._jobs.values())

    def submit(self, data: bytes, filename: str, fmt: str, owner: str) -> IngestJob:
        """Queue one uploaded file for ``owner`` (a key namespace); raise IngestQuotaError."""
        limits = self.limits
        with self._lock:
            waiting = sum(
                job.owner == owner and job.state in ("queued", "running")
                for job in self._jobs.values()
            )
            if waiting >= limits.max_jobs_per_key:
                raise IngestQuotaError(
                    f"this key has {waiting} ingest job(s) waiting or running, the most allowed "
                    f"({limits.max_jobs_per_key}); retry when one has finished",
                    retry_after=10,
                )
            used = self._bytes_by_owner.get(owner, 0)
            if used + len(data) > limits.max_bytes_per_key:
                raise IngestQuotaError(
                    f"this key has uploaded {used} bytes; {len(data)} more would pass its "
                    f"allowance of {limits.max_bytes_per_key} bytes "
                    "(server.max_ingest_bytes_per_key)"
                )
            self._bytes_by_owner[owner] = used + len(data)
            job = IngestJob(
                id=f"ingest-{uuid.uuid4().hex}",
                owner=owner,
                filename=safe_filename(filename),
                bytes=len(data),
            )
            self._jobs[job.id] = job
            self._forget_old_jobs()
        self._executor.submit(self._run, job, data, fmt)
        return job

    def get(self, job_id: str, owner: str) -> IngestJob | None:
        """The job ``job_id`` if ``owner`` submitted it, else None."""
        with self._lock:
            job = self._jobs.get(job_id)
            return job if job is not None and job.owner == owner else None

    def _forget_old_jobs(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.state in FINISHED_STATES]
        for job_id in finished[: max(0, len(finished) - _KEPT_FINISHED_JOBS)]:
            del self._jobs[job_id]

    def _run(self, job: IngestJob, data: bytes, fmt: str) -> None:
        with self._lock:
            job.state, job.started = "running", time.time()
        origin = f"{UPLOAD_ORIGIN_PREFIX}{job.owner}"
        hidden = "\x00"  # the temp folder, kept out of every message
        try:
            with self._upload_folder() as folder:
                hidden = str(folder)
                path = folder / job.filename
                path.write_bytes(data)

                def without_server_paths(document: Document) -> Document:
                    source_id = document.source_id
                    if hidden in source_id:
                        source_id = upload_source_id(job.filename, job.owner)
                    return document.model_copy(update={"source_id": source_id, "path": None})

                report = self._ingest(
                    [path],
                    fmt=fmt,
                    progress=False,
                    origin=origin,
                    prepare=without_server_paths,
                    max_documents=self.limits.max_documents,
                    max_chunks=self.limits.max_chunks,
                )
            result = asdict(report)
            result["ok"] = report.ok
            for failure in result["failures"]:
                failure["path"] = job.filename
                failure["reason"] = str(failure.get("reason", "")).replace(hidden, "")
            state, reason = finished_state(result)
            with self._lock:
                job.state, job.report, job.error = state, result, reason
        except MedgraphError as error:
            with self._lock:
                job.state, job.error = "failed", str(error).replace(hidden, "")
        except Exception:  # the job fails; the worker lives on for the next one
            logger.exception("ingest job %s failed", job.id)
            with self._lock:
                job.state, job.error = "failed", "the server failed while ingesting; see its log"
        finally:
            with self._lock:
                job.finished = time.time()

    @contextmanager
    def _upload_folder(self) -> Iterator[Path]:
        folder = self._scratch.new_folder("medgraph-upload-")
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
