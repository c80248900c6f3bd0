"""``medgraph ingest``, ``import-vectors``, ``search`` and ``eval retrieval``.

Heavy modules (chromadb, torch) load inside the commands, so ``medgraph --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from medgraph.cli.app import app, eval_app
from medgraph.cli.terminal import terminal_text
from medgraph.errors import ConfigurationError

if TYPE_CHECKING:
    from medgraph.knowledge.config import KnowledgeSettings
    from medgraph.knowledge.evaluation import RetrievalMetrics

EXIT_FILES_FAILED = 1
EXIT_INTERRUPTED = 130
_SEARCH_MODES = ("hybrid", "dense", "lexical")
_SNIPPET = 240

IndexOption = typer.Option(
    None, "--index", help="Index folder (default: knowledge.index_dir, .medgraph/index)."
)


def _settings(index: Path | None) -> KnowledgeSettings:
    """The knowledge settings from the environment / medgraph.toml, with ``--index`` applied."""
    from medgraph.settings import Settings

    knowledge = Settings().knowledge
    if index is not None:
        knowledge = knowledge.model_copy(update={"index_dir": index})
    return knowledge


def _check_k(k: int) -> None:
    if k < 1:
        raise ConfigurationError(f"-k must be a positive number of results, got {k}")


@app.command("ingest")
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders to index.", show_default=False),
    index: Path | None = IndexOption,
    fmt: str = typer.Option(
        "auto", "--format", help="auto, pubmedqa, pubmed-xml, pdf, text or jsonl."
    ),
    prune: bool = typer.Option(
        False, "--prune", help="Remove indexed documents that are not among these inputs."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    ray: str | None = typer.Option(
        None,
        "--ray",
        help="Ingest on a Ray cluster: ADDRESS (e.g. ray://head:10001 or auto), or 'local' to "
        "start one here. Needs a store server every worker reaches (knowledge.chroma_url, or "
        "knowledge.store=milvus with a server's knowledge.milvus_uri) and the medgraph[ray] "
        "extra.",
        show_default=False,
    ),
) -> None:
    """Read literature files into the index (incremental: unchanged chunks are not re-embedded).

    Exit status: 0 when every file was read, 1 when some files failed (listed with the reason),
    2 for usage or configuration errors.
    """
    from medgraph.knowledge.index import LiteratureIndex
    from medgraph.knowledge.readers import FORMATS

    if fmt not in FORMATS:
        raise ConfigurationError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise ConfigurationError(
            f"no such file or folder: {', '.join(missing)}; nothing was indexed"
        )
    settings = _settings(index)
    if ray is not None and prune:
        raise ConfigurationError("--prune is not supported with --ray; run the prune without --ray")
    try:
        if ray is not None:
            from medgraph.knowledge.ray_ingest import ingest_with_ray

            report = ingest_with_ray(
                settings, paths, address=None if ray == "local" else ray, fmt=fmt
            )
        else:
            with LiteratureIndex(settings) as literature:
                report = literature.ingest(paths, fmt=fmt, prune=prune, progress=not quiet)
    except KeyboardInterrupt:
        typer.echo(
            "medgraph: ingest interrupted; the batches already stored are kept. Run the same "
            "command again to finish.",
            err=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not quiet:
        typer.echo(report.summary(problems=False))
    for warning in report.warnings:
        typer.echo(f"medgraph: warning: {warning}", err=True)
    for failure in report.failures:
        typer.echo(f"medgraph: cannot read {failure.path}: {failure.reason}", err=True)
    if report.failures:
        typer.echo(
            f"medgraph: {len(report.failures)} input(s) could not be read; the rest were indexed",
            err=True,
        )
        raise typer.Exit(EXIT_FILES_FAILED)


@app.command("import-vectors")
def import_vectors(
    source: Path = typer.Argument(
        ...,
        help="A MedCPT folder (embeds_chunk_N.npy, pmids_chunk_N.json, pubmed_chunk_N.json) or a "
        "parquet file or folder (id, text, vector columns).",
        show_default=False,
    ),
    fmt: str = typer.Option(..., "--format", help="medcpt or parquet.", show_default=False),
    index: Path | None = IndexOption,
    encoder: str | None = typer.Option(
        None,
        "--encoder",
        help="The model that made the vectors (default: MedCPT's article encoder for medcpt, the "
        "parquet metadata's medgraph.encoder).",
        show_default=False,
    ),
    query_encoder: str | None = typer.Option(
        None,
        "--query-encoder",
        help="The model to embed queries with (default: MedCPT's query encoder for medcpt, the "
        "parquet metadata's medgraph.query_encoder, else --encoder).",
        show_default=False,
    ),
    batch_size: int = typer.Option(1000, "--batch-size", help="Records stored per batch."),
) -> None:
    """Store precomputed vectors and their records in the index, without embedding them.

    Resumable: records already stored are skipped, so an interrupted import is finished by
    running the same command again.
    """
    from medgraph.knowledge.index import LiteratureIndex
    from medgraph.knowledge.vector_import import VECTOR_FORMATS, VectorFormat, open_vector_source

    if fmt not in VECTOR_FORMATS:
        raise ConfigurationError(f"--format {fmt!r} is not one of {', '.join(VECTOR_FORMATS)}")
    if batch_size < 1:
        raise ConfigurationError(f"--batch-size must be a positive number, got {batch_size}")
    vectors = open_vector_source(
        source, cast("VectorFormat", fmt), encoder=encoder, query_encoder=query_encoder
    )
    settings = _settings(index)
    try:
        with LiteratureIndex(settings) as literature:
            report = literature.import_vectors(vectors, progress=True, batch_size=batch_size)
    except KeyboardInterrupt:
        typer.echo(
            "medgraph: import interrupted; the batches already stored are kept. Run the same "
            "command again to finish.",
            err=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    typer.echo(report.summary())


@app.command("search")
def search(
    query: str = typer.Argument(..., help="What to look for.", show_default=False),
    index: Path | None = IndexOption,
    k: int = typer.Option(10, "-k", "--top-k", help="Number of passages."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, dense or lexical."),
    year_min: int | None = typer.Option(None, "--year-min", help="Only records from this year on."),
    year_max: int | None = typer.Option(None, "--year-max", help="Only records up to this year."),
    as_json: bool = typer.Option(False, "--json", help="Print the evidence as JSON."),
) -> None:
    """Search the literature index and print the best passages with their citations."""
    from medgraph.knowledge.index import LiteratureIndex

    if mode not in _SEARCH_MODES:
        raise ConfigurationError(f"--mode {mode!r} is not one of {', '.join(_SEARCH_MODES)}")
    _check_k(k)
    years = {
        key: value for key, value in (("gte", year_min), ("lte", year_max)) if value is not None
    }
    where = {"year": years} if years else None
    with LiteratureIndex(_settings(index)) as literature:
        hits = literature.search(query, k=k, mode=mode, where=where)
    if as_json:
        payload = [
            {
                "rank": rank,
                "citation": hit.citation(rank),
                "link": hit.document.link,
                **hit.model_dump(mode="json", exclude={"number"}),
            }
            for rank, hit in enumerate(hits, start=1)
        ]
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    if not hits:
        typer.echo("No passages matched.")
        return
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(terminal_text(hit.chunk.text).split())
        if len(snippet) > _SNIPPET:
            snippet = snippet[: _SNIPPET - 1].rstrip() + "…"
        section = f" ({terminal_text(hit.chunk.section)})" if hit.chunk.section else ""
        typer.echo(f"{terminal_text(hit.citation(rank))}  score {hit.score:.4f}{section}")
        typer.echo(f"    {snippet}")


@eval_app.command("retrieval")
def eval_retrieval(
    questions: Path = typer.Option(
        ...,
        "--questions",
        help="JSON lines with 'question' and 'gold_ids' (list) or 'pmid'.",
        show_default=False,
    ),
    index: Path | None = IndexOption,
    k: int = typer.Option(10, "-k", "--top-k", help="Depth of hit@k and recall@k."),
    mode: str = typer.Option("all", "--mode", help="dense, lexical, hybrid or all."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object keyed by mode."),
) -> None:
    """Score retrieval on labelled questions: hit@1, hit@k, recall@k, MRR@10, latency p50/p95."""
    from medgraph.knowledge.evaluation import evaluate_retrieval, load_questions
    from medgraph.knowledge.index import LiteratureIndex

    if mode != "all" and mode not in _SEARCH_MODES:
        raise ConfigurationError(
            f"--mode {mode!r} is not one of {', '.join((*_SEARCH_MODES, 'all'))}"
        )
    _check_k(k)
    modes = ("dense", "lexical", "hybrid") if mode == "all" else (mode,)
    labelled = load_questions(questions)
    with LiteratureIndex(_settings(index)) as literature:
        results = evaluate_retrieval(literature, labelled, k=k, modes=modes)
    if as_json:
        typer.echo(json.dumps({name: metrics.as_dict() for name, metrics in results.items()}))
        return
    _print_table(results, k, questions)


def _print_table(results: dict[str, RetrievalMetrics], k: int, source: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    first = next(iter(results.values()))
    table = Table(title=f"Retrieval on {source.name} ({first.questions} questions, documents)")
    table.add_column("mode")
    for header in ("hit@1", f"hit@{k}", f"recall@{k}", "MRR@10", "p50 ms", "p95 ms"):
        table.add_column(header, justify="right")
    for name, metrics in results.items():
        table.add_row(
            name,
            f"{metrics.hit_at_1:.3f}",
            f"{metrics.hit_at_k:.3f}",
            f"{metrics.recall_at_k:.3f}",
            f"{metrics.mrr_at_10:.3f}",
            f"{metrics.latency_p50_ms:.1f}",
            f"{metrics.latency_p95_ms:.1f}",
        )
    Console(file=sys.stdout, width=100).print(table)


__all__ = ["eval_retrieval", "import_vectors", "ingest", "search"]
