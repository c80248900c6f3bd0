"""Small synthetic files in the layouts :mod:`medgraph.knowledge.vector_import` reads.

``write_medcpt_chunks`` writes NCBI's MedCPT PubMed layout (``embeds_chunk_N.npy``,
``pmids_chunk_N.json``, ``pubmed_chunk_N.json``); ``write_parquet_vectors`` a folder of parquet
files. Both return what they wrote, in the order a reader must yield it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FIRST_PMID = 30_000_000


def medcpt_article(pmid: str) -> dict[str, str]:
    """The article record written for ``pmid`` (MedCPT's keys: t, a, d, m)."""
    number = int(pmid)
    return {
        "t": f"Trial {pmid} of aspirin after stroke",
        "a": f"Abstract of article {pmid}: {number % 97} patients were randomised.",
        "d": f"{2000 + number % 24}{1 + number % 12:02d}15",
        "m": "humans!|aspirin!|aspirin!therapeutic use*|stroke*|",
    }


def write_medcpt_chunks(
    folder: Path,
    chunks: Sequence[int],
    dimension: int = 768,
    seed: int = 0,
    *,
    numbers: Sequence[int] | None = None,
) -> tuple[list[str], np.ndarray, dict[str, dict[str, str]]]:
    """Write one MedCPT chunk per entry of ``chunks`` (its number of articles) into ``folder``.

    Chunk ``i`` is numbered ``numbers[i]`` (default ``i``); give them ascending. PMIDs count up
    from :data:`FIRST_PMID`; even chunks list them as strings, odd chunks as integers (NCBI's files
    use strings; readers accept both). Vectors are unnormalised float32, like MedCPT's. Returns
    ``(pmids, vectors, articles)`` across all chunks, in reading order.
    """
    numbers = list(range(len(chunks))) if numbers is None else list(numbers)
    if len(numbers) != len(chunks) or numbers != sorted(numbers):
        raise ValueError("numbers must give one ascending chunk number per chunk")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pmids: list[str] = []
    blocks: list[np.ndarray] = []
    articles: dict[str, dict[str, str]] = {}
    for position, (size, number) in enumerate(zip(chunks, numbers, strict=True)):
        chunk_pmids = [str(FIRST_PMID + len(pmids) + row) for row in range(size)]
        vectors = (rng.standard_normal((size, dimension)) * 4.0).astype(np.float32)
        chunk_articles = {pmid: medcpt_article(pmid) for pmid in chunk_pmids}
        listed: list[Any] = chunk_pmids if position % 2 == 0 else [int(p) for p in chunk_pmids]
        np.save(folder / f"embeds_chunk_{number}.npy", vectors)
        (folder / f"pmids_chunk_{number}.json").write_text(json.dumps(listed), encoding="utf-8")
        (folder / f"pubmed_chunk_{number}.json").write_text(
            json.dumps(chunk_articles), encoding="utf-8"
        )
        pmids.extend(chunk_pmids)
        blocks.append(vectors)
        articles.update(chunk_articles)
    return pmids, np.concatenate(blocks), articles


def parquet_row(identifier: str, number: int) -> dict[str, Any]:
    """The metadata written for record ``identifier`` (the ``number``-th overall)."""
    return {
        "id": identifier,
        "text": f"Passage {number} about statins and stroke recurrence.",
        "title": f"Statin study {number}",
        "year": 1990 + number,
        "journal": "Stroke",
        "pmid": str(20_000_000 + number),
        "doi": f"10.1000/statin.{number}",
        "url": f"https://pubmed.ncbi.nlm.nih.gov/{20_000_000 + number}/",
        "authors": [f"Author{number} A", f"Coauthor{number} B"],
    }


def write_parquet_vectors(
    folder: Path,
    files: Sequence[int],
    dimension: int = 32,
    seed: int = 0,
    *,
    fixed_size: bool = False,
    joined_authors: bool = False,
    metadata: dict[str, str] | None = None,
    row_group_size: int | None = None,
) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """Write ``part-I.parquet`` files into ``folder``, file ``I`` holding ``files[I]`` rows.

    Columns: ``id``, ``text``, ``vector`` (``list<float>``, or ``fixed_size_list`` with
    ``fixed_size``), the optional metadata of :func:`parquet_row` (``authors`` as one
    ``"; "``-joined string with ``joined_authors``) and an unknown ``score`` column. ``metadata`` is
    written as each file's key-value metadata. Returns ``(ids, vectors, rows)`` in reading order.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    for position, size in enumerate(files):
        numbers = range(len(ids), len(ids) + size)
        file_rows = [parquet_row(f"doc-{number:04d}", number) for number in numbers]
        vectors = rng.standard_normal((size, dimension)).astype(np.float32)
        values = pa.array(vectors.reshape(-1), type=pa.float32())
        vector_column = (
            pa.FixedSizeListArray.from_arrays(values, dimension)
            if fixed_size
            else pa.ListArray.from_arrays(
                pa.array(np.arange(size + 1, dtype=np.int32) * dimension), values
            )
        )
        columns: dict[str, Any] = {
            name: [row[name] for row in file_rows] for name in file_rows[0] if name != "authors"
        }
        columns["authors"] = [
            "; ".join(row["authors"]) if joined_authors else row["authors"] for row in file_rows
        ]
        columns["vector"] = vector_column
        columns["score"] = [0.5] * size
        table = pa.table(columns)
        if metadata:
            table = table.replace_schema_metadata(metadata)
        pq.write_table(table, folder / f"part-{position}.parquet", row_group_size=row_group_size)
        ids.extend(row["id"] for row in file_rows)
        blocks.append(vectors)
        rows.extend(file_rows)
    return ids, np.concatenate(blocks), rows
