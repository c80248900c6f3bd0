"""Reading precomputed vectors: NCBI's MedCPT PubMed chunks and parquet tables.

The files are small synthetic copies of each layout (tests/knowledge/vector_files.py). The tests
check order and values against what was written, resuming with ``skip`` across file boundaries,
bounded batches, memory-mapped and streamed reads, and the errors and warnings for broken inputs.
"""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medgraph.cli import main
from medgraph.errors import ConfigurationError, IngestError
from medgraph.knowledge.vector_import import (
    MEDCPT_ARTICLE_ENCODER,
    MEDCPT_QUERY_ENCODER,
    ImportedRecord,
    MedcptSource,
    ParquetSource,
    VectorImportError,
    VectorSource,
    open_vector_source,
)
from tests.knowledge.vector_files import write_medcpt_chunks, write_parquet_vectors

CHUNKS = (5, 7, 6)
NUMBERS = (1, 2, 10)  # in name order 1, 10, 2: chunk numbers must be compared as numbers


@pytest.fixture
def medcpt(tmp_path: Path) -> tuple[Path, list[str], np.ndarray, dict[str, dict[str, str]]]:
    folder = tmp_path / "medcpt"
    pmids, vectors, articles = write_medcpt_chunks(folder, CHUNKS, numbers=NUMBERS)
    return folder, pmids, vectors, articles


def _all(source: VectorSource, batch_size: int = 4, skip: int = 0) -> list[ImportedRecord]:
    return [record for batch in source.batches(batch_size, skip=skip) for record in batch]


def _ids(records: list[ImportedRecord]) -> list[str]:
    return [record.document.source_id for record in records]


def _vectors(records: list[ImportedRecord]) -> np.ndarray:
    return np.stack([record.vector for record in records])


# MedCPT -----------------------------------------------------------------------------------------


def test_medcpt_records_come_out_in_chunk_order_with_their_vectors(medcpt: Any) -> None:
    folder, pmids, vectors, articles = medcpt
    source = open_vector_source(folder, "medcpt")
    assert isinstance(source, MedcptSource) and source.fmt == "medcpt"
    assert (source.total, source.dimension) == (sum(CHUNKS), 768)
    assert [path.name for path in source.files] == [f"embeds_chunk_{n}.npy" for n in NUMBERS]
    assert source.document_encoder == MEDCPT_ARTICLE_ENCODER
    assert source.query_encoder == MEDCPT_QUERY_ENCODER

    records = _all(source)
    assert _ids(records) == pmids
    np.testing.assert_array_equal(_vectors(records), vectors)
    assert all(r.vector.dtype == np.float32 and r.vector.shape == (768,) for r in records)
    assert not any(isinstance(r.vector, np.memmap) for r in records)
    assert source.warnings == [] and source.skipped == 0

    document = records[7].document
    article = articles[pmids[7]]
    assert document.source_id == document.pmid == pmids[7]
    assert document.title == article["t"] and document.text == article["a"]
    assert document.year == int(article["d"][:4])
    assert document.extra == {"mesh": "humans; aspirin; stroke"}
    assert document.path == str((folder / "pubmed_chunk_2.json").resolve())


def test_medcpt_batches_are_bounded_and_span_chunks(medcpt: Any) -> None:
    folder, pmids, _, _ = medcpt
    source = open_vector_source(folder, "medcpt")
    for size in (1, 4, 5, 100):
        sizes = [len(batch) for batch in source.batches(size)]
        assert sum(sizes) == len(pmids)
        assert all(n == size for n in sizes[:-1]) and 1 <= sizes[-1] <= size


@pytest.mark.parametrize("skip", [0, 1, 4, 5, 6, 11, 12, 13, 17])
def test_medcpt_skip_resumes_at_that_record_across_chunks(medcpt: Any, skip: int) -> None:
    folder, pmids, vectors, _ = medcpt
    records = _all(open_vector_source(folder, "medcpt"), batch_size=3, skip=skip)
    assert _ids(records) == pmids[skip:]
    np.testing.assert_array_equal(_vectors(records), vectors[skip:])


def test_medcpt_skip_does_not_read_the_chunks_it_passes(medcpt: Any) -> None:
    folder, pmids, _, _ = medcpt
    source = open_vector_source(folder, "medcpt")
    (folder / "pubmed_chunk_1.json").write_text("{not json", encoding="utf-8")
    (folder / "pmids_chunk_1.json").write_text("[", encoding="utf-8")
    assert _ids(_all(source, skip=CHUNKS[0])) == pmids[CHUNKS[0] :]
    with pytest.raises(VectorImportError, match=re.escape("pmids_chunk_1.json is not valid JSON")):
        _all(source, skip=CHUNKS[0] - 1)


def test_medcpt_skip_to_the_end_yields_nothing_and_past_it_is_an_error(medcpt: Any) -> None:
    folder, pmids, _, _ = medcpt
    source = open_vector_source(folder, "medcpt")
    assert list(source.batches(4, skip=len(pmids))) == []
    with pytest.raises(VectorImportError, match=f"cannot skip {len(pmids) + 1} records"):
        source.batches(4, skip=len(pmids) + 1)
    with pytest.raises(ConfigurationError, match="batch_size"):
        source.batches(0)
    with pytest.raises(ConfigurationError, match="skip"):
        source.batches(4, skip=-1)


def test_medcpt_vectors_are_memory_mapped_and_sliced_one_batch_at_a_time(
    medcpt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _, vectors, _ = medcpt
    real_load = np.load
    modes: list[Any] = []
    slices: list[int] = []

    class Recording:
        """A memory-mapped array that records how many rows each read takes."""

        def __init__(self, array: np.ndarray) -> None:
            self._array = array

        def __getattr__(self, name: str) -> Any:
            return getattr(self._array, name)

        def __getitem__(self, key: slice) -> np.ndarray:
            part = self._array[key]
            slices.append(len(part))
            return part

        def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
            raise AssertionError("the whole chunk was read into memory")

    def spy(path: Any, *args: Any, **kwargs: Any) -> Any:
        modes.append(kwargs.get("mmap_mode"))
        array = real_load(path, *args, **kwargs)
        assert isinstance(array, np.memmap)
        return Recording(array)

    monkeypatch.setattr(np, "load", spy)
    source = open_vector_source(folder, "medcpt")
    records = _all(source, batch_size=3)
    np.testing.assert_array_equal(_vectors(records), vectors)
    assert modes and set(modes) == {"r"}
    assert slices and max(slices) <= 3


def test_medcpt_missing_file_is_an_error_naming_it(medcpt: Any) -> None:
    folder, _, _, _ = medcpt
    (folder / "pmids_chunk_2.json").unlink()
    with pytest.raises(
        VectorImportError, match=re.escape("pmids_chunk_2.json is missing")
    ) as raised:
        open_vector_source(folder, "medcpt")
    assert isinstance(raised.value, IngestError)
    assert str(folder / "pmids_chunk_2.json") in str(raised.value)


def test_medcpt_empty_folder_and_file_path_are_errors(tmp_path: Path) -> None:
    with pytest.raises(VectorImportError, match=re.escape("holds no embeds_chunk_N.npy")):
        open_vector_source(tmp_path, "medcpt")
    (tmp_path / "embeds_chunk_0.npy").write_bytes(b"")
    with pytest.raises(VectorImportError, match="is not a folder"):
        open_vector_source(tmp_path / "embeds_chunk_0.npy", "medcpt")
    with pytest.raises(VectorImportError, match="no such file or folder"):
        open_vector_source(tmp_path / "absent", "medcpt")


def test_medcpt_pmids_of_another_length_are_an_error_naming_the_file(medcpt: Any) -> None:
    folder, pmids, _, _ = medcpt
    chunk_two = pmids[CHUNKS[0] : CHUNKS[0] + CHUNKS[1]]
    (folder / "pmids_chunk_2.json").write_text(json.dumps(chunk_two[:-1]), encoding="utf-8")
    source = open_vector_source(folder, "medcpt")
    with pytest.raises(VectorImportError) as raised:
        _all(source)
    message = str(raised.value)
    assert "pmids_chunk_2.json lists 6 PMIDs" in message and "embeds_chunk_2.npy holds 7" in message


def test_medcpt_articles_file_with_more_articles_than_pmids_is_an_error(medcpt: Any) -> None:
    folder, _, _, articles = medcpt
    extra = {"1": {"t": "x", "a": "y"}} | json.loads((folder / "pubmed_chunk_1.json").read_text())
    (folder / "pubmed_chunk_1.json").write_text(json.dumps(extra), encoding="utf-8")
    with pytest.raises(VectorImportError, match=re.escape("pubmed_chunk_1.json holds 6 articles")):
        _all(open_vector_source(folder, "medcpt"))
    assert len(articles) == sum(CHUNKS)


def test_medcpt_truncated_npy_and_other_dimension_are_errors_naming_the_file(
    medcpt: Any,
) -> None:
    folder, _, _, _ = medcpt
    embeds = folder / "embeds_chunk_10.npy"
    embeds.write_bytes(embeds.read_bytes()[:-100])
    with pytest.raises(
        VectorImportError, match=re.escape("embeds_chunk_10.npy is not a readable .npy")
    ):
        open_vector_source(folder, "medcpt")
    np.save(embeds, np.zeros((6, 384), dtype=np.float32))
    with pytest.raises(
        VectorImportError, match=re.escape("embeds_chunk_10.npy holds 384-d vectors")
    ):
        open_vector_source(folder, "medcpt")


def test_medcpt_pmid_without_article_is_skipped_with_a_warning(medcpt: Any) -> None:
    folder, pmids, vectors, _ = medcpt
    path = folder / "pubmed_chunk_2.json"
    articles = json.loads(path.read_text())
    gone = pmids[CHUNKS[0] + 2]
    del articles[gone]
    path.write_text(json.dumps(articles), encoding="utf-8")
    source = open_vector_source(folder, "medcpt")
    records = _all(source)
    kept = [i for i, pmid in enumerate(pmids) if pmid != gone]
    assert _ids(records) == [pmids[i] for i in kept]
    np.testing.assert_array_equal(_vectors(records), vectors[kept])
    assert source.skipped == 1
    assert len(source.warnings) == 1
    warning = source.warnings[0]
    assert "embeds_chunk_2.npy" in warning and gone in warning
    assert "no article record in pubmed_chunk_2.json" in warning


def test_medcpt_non_finite_vector_and_empty_article_are_skipped(medcpt: Any) -> None:
    folder, pmids, vectors, _ = medcpt
    broken = vectors[: CHUNKS[0]].copy()
    broken[1, 5] = np.nan
    np.save(folder / "embeds_chunk_1.npy", broken)
    path = folder / "pubmed_chunk_1.json"
    articles = json.loads(path.read_text())
    articles[pmids[3]] = {"t": "", "a": "  ", "d": ""}
    articles[pmids[4]] = {"t": "Title only", "a": ""}
    path.write_text(json.dumps(articles), encoding="utf-8")
    source = open_vector_source(folder, "medcpt")
    records = _all(source)
    assert _ids(records) == [pmids[0], pmids[2], *pmids[4:]]
    title_only = records[2].document
    assert title_only.text == title_only.title == "Title only" and title_only.year is None
    assert source.skipped == 2 and len(source.warnings) == 2
    assert any("NaN" in w and pmids[1] in w for w in source.warnings)
    assert any("no title or abstract" in w and pmids[3] in w for w in source.warnings)


def test_medcpt_bad_pmid_is_an_error_naming_the_file(medcpt: Any) -> None:
    folder, pmids, _, _ = medcpt
    listed = [*pmids[:4], "PMC123"]
    (folder / "pmids_chunk_1.json").write_text(json.dumps(listed), encoding="utf-8")
    with pytest.raises(VectorImportError, match=r"pmids_chunk_1.json: item 4 is 'PMC123'"):
        _all(open_vector_source(folder, "medcpt"))


def test_medcpt_encoders_can_be_overridden(medcpt: Any) -> None:
    folder, _, _, _ = medcpt
    source = open_vector_source(folder, "medcpt", query_encoder="/models/medcpt-query")
    assert source.document_encoder == MEDCPT_ARTICLE_ENCODER
    assert source.query_encoder == "/models/medcpt-query"


# Parquet ----------------------------------------------------------------------------------------


def test_parquet_folder_is_read_in_name_order_with_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "vectors"
    ids, vectors, rows = write_parquet_vectors(
        folder, [4, 3], metadata={"medgraph.encoder": "org/doc-model"}
    )
    source = open_vector_source(folder, "parquet")
    assert isinstance(source, ParquetSource) and source.fmt == "parquet"
    assert (source.total, source.dimension) == (7, 32)
    assert source.document_encoder == source.query_encoder == "org/doc-model"
    records = _all(source, batch_size=3)
    assert [len(batch) for batch in source.batches(3)] == [3, 3, 1]
    assert _ids(records) == ids
    np.testing.assert_array_equal(_vectors(records), vectors)
    assert all(r.vector.dtype == np.float32 and r.vector.shape == (32,) for r in records)
    document, row = records[5].document, rows[5]
    assert document.text == row["text"] and document.title == row["title"]
    assert document.year == row["year"] and document.journal == row["journal"]
    assert (document.pmid, document.doi, document.url) == (row["pmid"], row["doi"], row["url"])
    assert document.authors == tuple(row["authors"])
    assert "score" not in document.extra
    assert document.path == str((folder / "part-1.parquet").resolve())


def test_parquet_fixed_size_vectors_joined_authors_and_one_file(tmp_path: Path) -> None:
    _, vectors, rows = write_parquet_vectors(
        tmp_path, [5], dimension=8, fixed_size=True, joined_authors=True
    )
    source = open_vector_source(tmp_path / "part-0.parquet", "parquet")
    assert (source.total, source.dimension) == (5, 8)
    assert source.document_encoder is None and source.query_encoder is None
    records = _all(source)
    np.testing.assert_array_equal(_vectors(records), vectors)
    assert records[0].document.authors == tuple(rows[0]["authors"])


@pytest.mark.parametrize("skip", [0, 1, 2, 3, 4, 5, 8, 9])
def test_parquet_skip_resumes_across_files_and_row_groups(tmp_path: Path, skip: int) -> None:
    ids, vectors, _ = write_parquet_vectors(tmp_path, [4, 5], row_group_size=2)
    records = _all(open_vector_source(tmp_path, "parquet"), batch_size=3, skip=skip)
    assert _ids(records) == ids[skip:]
    if records:
        np.testing.assert_array_equal(_vectors(records), vectors[skip:])


def test_parquet_is_streamed_with_iter_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    ids, _, _ = write_parquet_vectors(tmp_path, [6, 6], row_group_size=3)
    sizes: list[int] = []
    real = pq.ParquetFile.iter_batches

    def spy(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for batch in real(self, *args, **kwargs):
            sizes.append(batch.num_rows)
            yield batch

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a whole table or row group was read")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    for name in ("read", "read_row_group", "read_row_groups"):
        monkeypatch.setattr(pq.ParquetFile, name, refuse)
    monkeypatch.setattr(pq, "read_table", refuse)
    records = _all(open_vector_source(tmp_path, "parquet"), batch_size=2)
    assert _ids(records) == ids
    assert sizes and max(sizes) <= 2


def test_parquet_missing_column_is_an_error_naming_file_and_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_parquet_vectors(tmp_path, [2, 2])
    second = tmp_path / "part-1.parquet"
    pq.write_table(pq.read_table(second).drop_columns(["text"]), second)
    with pytest.raises(VectorImportError) as raised:
        open_vector_source(tmp_path, "parquet")
    assert str(second) in str(raised.value) and "no 'text' column" in str(raised.value)

    pq.write_table(pa.table({"id": ["a"], "text": ["t"], "vector": ["not a list"]}), second)
    with pytest.raises(VectorImportError, match="column 'vector' is string; it must be a list"):
        open_vector_source(tmp_path, "parquet")


def test_parquet_vector_of_another_length_is_an_error_naming_the_row(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {"id": ["a", "b", "c"], "text": ["x", "y", "z"], "vector": [[1.0, 2.0], [3.0, 4.0], [5.0]]}
    )
    pq.write_table(table, tmp_path / "v.parquet")
    source = open_vector_source(tmp_path, "parquet")
    assert source.dimension == 2
    with pytest.raises(VectorImportError, match=r"row 2 \(id 'c'\) has 1 values"):
        _all(source)


def test_parquet_rows_without_text_or_vector_are_skipped_with_warnings(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": ["a", "b", "c", "d", "e"],
            "text": ["x", "", "z", "w", "v"],
            "vector": [[1.0, 2.0], [3.0, 4.0], None, [float("inf"), 0.0], [5.0, 6.0]],
        }
    )
    path = tmp_path / "v.parquet"
    pq.write_table(table, path)
    source = open_vector_source(path, "parquet")
    records = _all(source)
    assert _ids(records) == ["a", "e"]
    np.testing.assert_array_equal(_vectors(records), np.array([[1, 2], [5, 6]], np.float32))
    assert source.skipped == 3 and len(source.warnings) == 2
    assert all(str(path) in warning for warning in source.warnings)
    assert any("no text" in w and "(first: b)" in w for w in source.warnings)
    assert any("NaN or infinite" in w and "(first: c, d)" in w for w in source.warnings)


def test_parquet_encoders_from_arguments_and_conflicting_metadata(tmp_path: Path) -> None:
    write_parquet_vectors(
        tmp_path,
        [2],
        metadata={"medgraph.encoder": "org/doc", "medgraph.query_encoder": "org/query"},
    )
    source = open_vector_source(tmp_path, "parquet")
    assert (source.document_encoder, source.query_encoder) == ("org/doc", "org/query")
    source = open_vector_source(tmp_path, "parquet", encoder="mine/doc", query_encoder="mine/q")
    assert (source.document_encoder, source.query_encoder) == ("mine/doc", "mine/q")

    other = tmp_path / "other"
    write_parquet_vectors(other, [2], metadata={"medgraph.encoder": "org/doc"})
    (other / "part-0.parquet").rename(other / "a.parquet")
    write_parquet_vectors(other, [2], metadata={"medgraph.encoder": "org/other"})
    with pytest.raises(VectorImportError, match=re.escape("names medgraph.encoder 'org/doc'")):
        open_vector_source(other, "parquet")


def test_parquet_empty_folder_and_non_parquet_file_are_errors(tmp_path: Path) -> None:
    with pytest.raises(VectorImportError, match=re.escape("holds no .parquet files")):
        open_vector_source(tmp_path, "parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet", encoding="utf-8")
    with pytest.raises(
        VectorImportError, match=re.escape("bad.parquet is not a readable parquet file")
    ):
        open_vector_source(tmp_path, "parquet")


def test_unknown_format_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="'faiss' is not one of medcpt, parquet"):
        open_vector_source(tmp_path, "faiss")  # type: ignore[arg-type]


# CLI --------------------------------------------------------------------------------------------


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), captured.out, captured.err


def _fake_index_module(monkeypatch: pytest.MonkeyPatch, index_class: type) -> None:
    """Put ``index_class`` in for LiteratureIndex: these tests cover the command, not the index."""
    module = types.ModuleType("medgraph.knowledge.index")
    module.LiteratureIndex = index_class  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "medgraph.knowledge.index", module)


def test_import_vectors_command_mistakes_are_one_line_exit_2(
    medcpt: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    class NoIndex:
        def __init__(self, settings: Any) -> None:
            raise AssertionError("the index was opened before the source was checked")

    _fake_index_module(monkeypatch, NoIndex)
    folder, _, _, _ = medcpt
    index = tmp_path / "index"
    cases = [
        (["import-vectors", str(folder), "--format", "faiss"], "--format 'faiss'"),
        (["import-vectors", str(tmp_path / "absent"), "--format", "medcpt"], "no such file"),
        (
            ["import-vectors", str(folder), "--format", "medcpt", "--batch-size", "0"],
            "--batch-size",
        ),
        (["import-vectors", str(folder), "--format", "parquet"], "holds no .parquet files"),
    ]
    (folder / "pubmed_chunk_10.json").rename(tmp_path / "moved.json")
    cases.append((["import-vectors", str(folder), "--format", "medcpt"], "pubmed_chunk_10.json"))
    for args, expected in cases:
        code, out, err = _run([*args, "--index", str(index)], capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and out == "" and len(lines) == 1, err
        assert lines[0].startswith("medgraph: error: ") and expected in lines[0]
    assert not index.exists()


def test_import_vectors_command_hands_the_source_to_the_index(
    medcpt: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _, _, _ = medcpt
    calls: list[tuple[Any, ...]] = []

    class Report:
        def summary(self) -> str:
            return "imported: summary line"

    class FakeIndex:
        def __init__(self, settings: Any) -> None:
            calls.append(("open", settings.index_dir))

        def __enter__(self) -> FakeIndex:
            return self

        def __exit__(self, *exc: object) -> None:
            calls.append(("close",))

        def import_vectors(
            self, source: VectorSource, *, progress: bool, batch_size: int
        ) -> Report:
            calls.append(("import", source, progress, batch_size))
            return Report()

    _fake_index_module(monkeypatch, FakeIndex)
    index = tmp_path / "index"
    args = ["import-vectors", str(folder), "--format", "medcpt", "--index", str(index)]
    code, out, _ = _run([*args, "--batch-size", "64", "--query-encoder", "/m/q"], capsys)
    assert code == 0 and out.strip() == "imported: summary line"
    assert calls[0] == ("open", index) and calls[-1] == ("close",)
    _, source, progress, batch_size = calls[1]
    assert isinstance(source, MedcptSource) and source.path == folder
    assert source.document_encoder == MEDCPT_ARTICLE_ENCODER and source.query_encoder == "/m/q"
    assert (progress, batch_size) == (True, 64)
