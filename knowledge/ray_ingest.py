"""Distributed ingest on Ray: ``medgraph ingest FILES --ray ADDRESS`` (the ``medgraph[ray]`` extra).

A Ray Data pipeline reads the input files in parallel tasks (one file per task), then a pool of
actors (one embedding model each) chunks the documents, skips chunks the store holds already,
embeds the rest and writes them to the store every worker can reach: the Chroma server named by
``knowledge.chroma_url``, or with ``knowledge.store = "milvus"`` the Milvus server named by
``knowledge.milvus_uri``. Actors run the same planning code as :meth:`LiteratureIndex.ingest`
(content-hash chunk ids, same metadata), so a Ray ingest stores what a single-process ingest
stores. The driver then finishes the generation: on Chroma it adds the new chunks to the BM25
segments in ``index_dir`` (fetching only this generation's chunks), on Milvus it seals the
written segments; then it marks the generation complete.

Resumable: every batch is committed to the server as it is embedded; a restarted actor or a rerun
of the whole command after the driver died embeds only the chunks still missing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgraph.errors import ConfigurationError
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import IngestReport, LiteratureIndex
from medgraph.knowledge.ingest_plan import (
    embed_and_store,
    plan_ingest,
    stored_chunks,
    unique_documents,
)
from medgraph.knowledge.milvus_store import is_local_uri
from medgraph.knowledge.types import Document

logger = logging.getLogger(__name__)

_COUNTS = (
    "documents",
    "documents_added",
    "documents_updated",
    "documents_unchanged",
    "chunks_added",
    "chunks_unchanged",
    "chunks_updated",
    "chunks_removed",
)


def _require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigurationError(
            "--ray needs Ray Data: install the extra with pip install 'medgraph[ray]'"
        ) from None
    return ray


def _read_file(row: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    """Ray Data task: one input file -> one row per document (or one row naming the failure)."""
    from medgraph.knowledge.readers import _read_one

    outcome = _read_one(Path(row["path"]), fmt)
    if isinstance(outcome, list):
        return [{"document": document.model_dump_json(), "failure": ""} for document in outcome]
    return [{"document": "", "failure": json.dumps([outcome.path, outcome.reason])}]


class _EmbedWriter:
    """Ray actor: one embedding model; plans, embeds and stores a batch of documents."""

    def __init__(self, settings_json: str, generation: int) -> None:
        settings = KnowledgeSettings.model_validate_json(settings_json)
        self.index = LiteratureIndex(settings)
        self.store = self.index._create_store()
        self.generation = generation

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        documents = [Document.model_validate_json(text) for text in batch["document"] if text]
        report = IngestReport()
        index = self.index
        documents = unique_documents(documents, report)
        report.documents = len(documents)
        existing = stored_chunks(self.store, [d.source_id for d in documents])
        plan = plan_ingest(
            documents,
            existing,
            index.embedder,
            report,
            overlap=index.settings.chunk_overlap_sentences,
        )
        for item in plan.pending:
            item.metadata["generation"] = self.generation
        for metadata in plan.relabel_metadata:
            metadata["generation"] = self.generation
        started = time.perf_counter()
        embed_and_store(
            self.store,
            index.embedder,
            plan.pending,
            len(documents),
            progress=False,
            batch_size=index.settings.batch_size,
        )
        seconds = time.perf_counter() - started
        if plan.relabel_ids:
            self.store.update_metadata(plan.relabel_ids, plan.relabel_metadata)
        if plan.stale_ids:
            self.store.delete(plan.stale_ids)
        report.chunks_added = len(plan.pending)
        report.chunks_removed = len(plan.stale_ids)
        row: dict[str, list[Any]] = {name: [getattr(report, name)] for name in _COUNTS}
        row["emptied"] = [plan.emptied]
        row["embedding_seconds"] = [seconds]
        row["warnings"] = [json.dumps(report.warnings)]
        row["failures"] = [json.dumps([text for text in batch["failure"] if text])]
        return row


def _settings_json(settings: KnowledgeSettings) -> str:
    """``settings`` as JSON for the actors, the Milvus token included (pydantic masks secrets)."""
    data = settings.model_dump(mode="json")
    if settings.milvus_token is not None:
        data["milvus_token"] = settings.milvus_token.get_secret_value()
    return json.dumps(data)


def ingest_with_ray(
    settings: KnowledgeSettings,
    paths: Sequence[Path | str],
    *,
    address: str | None = None,
    fmt: str = "auto",
    workers: int | None = None,
    batch_documents: int = 64,
) -> IngestReport:
    """Ingest ``paths`` on a Ray cluster (``address``; None starts a new local one).

    ``workers`` embedding actors (default: one per CPU of the cluster) each hold one model and
    write batches of ``batch_documents`` documents to the Chroma server in ``chroma_url`` or the
    Milvus server in ``milvus_uri``.
    """
    if settings.store == "milvus":
        if is_local_uri(settings.resolved_milvus_uri()):
            raise ConfigurationError(
                "--ray writes to a Milvus server that every Ray worker can reach: set "
                "knowledge.milvus_uri (MEDGRAPH_KNOWLEDGE__MILVUS_URI=http://HOST:19530) to "
                "Milvus Standalone or Distributed, or to `milvus-lite server --data-dir DIR`"
            )
    elif settings.chroma_url is None:
        raise ConfigurationError(
            "--ray writes to a Chroma server that every Ray worker can reach: set "
            "knowledge.chroma_url (MEDGRAPH_KNOWLEDGE__CHROMA_URL=http://HOST:8000) and start it "
            "with `chroma run --host 0.0.0.0 --path DIR`, or use the Milvus store "
            "(knowledge.store=milvus with a Milvus server)"
        )
    ray = _require_ray()
    from medgraph.knowledge.readers import FORMATS, ReadFailure, _walk

    if fmt not in FORMATS:
        raise ConfigurationError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    started = time.perf_counter()
    files: list[str] = []
    failures: list[ReadFailure] = []
    for item in _walk(list(paths)):
        if isinstance(item, ReadFailure):
            failures.append(item)
        else:
            files.append(str(item))
    report = IngestReport(files=len(files), failures=failures)

    index = LiteratureIndex(settings)
    store = index._open_for_write()  # creates the collection with the model's identity
    searcher = index._open_searcher()
    searcher.start_ingest()
    generation = index.start_generation(store)

    if not ray.is_initialized():
        # Ray reads address=None as "join the newest cluster on this machine, if any"; "local"
        # always starts one, which is what the caller asked for.
        ray.init(address=address or "local", log_to_driver=False, configure_logging=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    pool = workers or max(1, cpus)
    counts = {name: 0 for name in _COUNTS}
    removed = False
    if files:
        import ray.data

        dataset = ray.data.from_items(
            [{"path": path} for path in files], override_num_blocks=len(files)
        )
        # Reading reserves no CPU (the embedding actors hold them) but is bounded in parallel.
        dataset = dataset.flat_map(
            _read_file,
            fn_kwargs={"fmt": fmt},
            num_cpus=0,
            compute=ray.data.TaskPoolStrategy(size=max(1, pool // 2)),
        )
        # Ray Data restarts a killed actor and retries its batch (max_restarts -1 by default);
        # the retried batch skips the chunks the dead actor had stored already.
        dataset = dataset.map_batches(
            _EmbedWriter,
            fn_constructor_kwargs={
                "settings_json": _settings_json(settings),
                "generation": generation,
            },
            batch_size=batch_documents,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=pool),
            num_cpus=1,
        )
        for row in dataset.iter_rows():
            for name in _COUNTS:
                counts[name] += int(row[name])
            removed = removed or bool(row["emptied"])
            report.embedding_seconds += float(row["embedding_seconds"])
            report.warnings.extend(json.loads(row["warnings"]))
            for failed in json.loads(row["failures"]):
                path, reason = json.loads(failed)
                report.failures.append(ReadFailure(path, reason))
    for name, value in counts.items():
        setattr(report, name, value)
    report.index_chunks, report.index_documents = searcher.finish_ingest(
        generation, removed=removed
    )
    report.seconds = time.perf_counter() - started
    index.close()
    return report


__all__ = ["ingest_with_ray"]
