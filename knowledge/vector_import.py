"""Read precomputed article vectors, so an index can be filled without embedding anything.

Two layouts (:func:`open_vector_source`):

- ``medcpt``: NCBI's MedCPT embeddings of PubMed
  (https://ftp.ncbi.nlm.nih.gov/pub/lu/MedCPT/pubmed_embeddings/), a folder of chunks ``N``
  of three files each: ``embeds_chunk_N.npy`` (float32, ``(n, 768)``, one row per article, from
  ``ncbi/MedCPT-Article-Encoder``), ``pmids_chunk_N.json`` (a JSON list of the rows' PMIDs, in row
  order) and ``pubmed_chunk_N.json`` (a JSON object mapping each PMID to its record: ``t`` title,
  ``a`` abstract, ``d`` date as ``YYYYMMDD``, ``m`` MeSH terms as ``descriptor!qualifier`` entries
  joined by ``|``). Chunks are read in the numeric order of ``N``.
- ``parquet``: one ``.parquet`` file or a folder of them (read in name order), one row per record:
  ``id`` (string), ``text`` (string) and ``vector`` (a list or fixed-size list of floats), with
  optional ``title``, ``year``, ``journal``, ``pmid``, ``doi``, ``url`` and ``authors`` (a list of
  names or one ``"; "``-joined string). Other columns are ignored. The file's key-value metadata
  may name the models: ``medgraph.encoder`` (documents) and ``medgraph.query_encoder``.

Both are streamed: ``.npy`` files are memory-mapped and copied into memory one batch of rows at a
time, parquet files are read with ``ParquetFile.iter_batches``; a chunk's two JSON files are parsed
once, when the chunk is reached. Row counts and the vector dimension come from the ``.npy`` headers
and the parquet footers, so opening a source reads no vectors (a parquet file whose ``vector``
column is a plain list reads its first vector to learn the dimension).

Vectors are yielded as published (float32; MedCPT's are not normalised: it ranks by inner
product). A record without text or with a non-finite vector, and a PMID that its chunk's articles
file lacks, is skipped, counted in :attr:`VectorSource.skipped` and summarised in
:attr:`VectorSource.warnings`; a file that is missing, malformed or disagrees with its chunk's
other files raises :class:`VectorImportError` naming it.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from medgraph.errors import ConfigurationError, IngestError
from medgraph.knowledge.types import Document

if TYPE_CHECKING:
    import pyarrow

VectorFormat = Literal["medcpt", "parquet"]
VECTOR_FORMATS: tuple[VectorFormat, ...] = ("medcpt", "parquet")

MEDCPT_ARTICLE_ENCODER = "ncbi/MedCPT-Article-Encoder"
MEDCPT_QUERY_ENCODER = "ncbi/MedCPT-Query-Encoder"
MEDCPT_URL = "https://ftp.ncbi.nlm.nih.gov/pub/lu/MedCPT/pubmed_embeddings/"

ENCODER_KEY = "medgraph.encoder"
QUERY_ENCODER_KEY = "medgraph.query_encoder"
"""Parquet key-value metadata naming the document and query models."""

_CHUNK_FILE = re.compile(r"(embeds|pmids|pubmed)_chunk_(\d+)\.(npy|json)")
_CHUNK_KINDS = {"embeds": "npy", "pmids": "json", "pubmed": "json"}
_YEAR = re.compile(r"\d{4}")
_EXAMPLES = 5
_REQUIRED_COLUMNS = ("id", "text", "vector")
_TEXT_COLUMNS = ("title", "journal", "doi", "url")
_OPTIONAL_COLUMNS = (*_TEXT_COLUMNS, "year", "pmid", "authors")

FloatVector = npt.NDArray[np.float32]


class VectorImportError(IngestError):
    """A vector file is missing, malformed or disagrees with the files it comes with."""


@dataclass(frozen=True)
class ImportedRecord:
    """One record to store as one chunk with its precomputed vector (float32, ``(dimension,)``)."""

    document: Document
    vector: FloatVector


class _Skips:
    """Records skipped while reading one file: a count and the first few ids per reason."""

    def __init__(self) -> None:
        self._ids: dict[str, list[str]] = {}
        self._counts: dict[str, int] = {}

    def add(self, reason: str, identifier: str) -> None:
        """Count ``identifier`` as skipped for ``reason``."""
        self._counts[reason] = self._counts.get(reason, 0) + 1
        examples = self._ids.setdefault(reason, [])
        if len(examples) < _EXAMPLES:
            examples.append(identifier)

    def flush(self, source: VectorSource, where: Path) -> None:
        """Add the counts to ``source`` and one warning per reason naming ``where``."""
        for reason, count in self._counts.items():
            source.skipped += count
            examples = ", ".join(self._ids[reason])
            source.warnings.append(
                f"{where}: {count} record(s) skipped, {reason} (first: {examples})"
            )
        self._ids.clear()
        self._counts.clear()


class VectorSource(ABC):
    """Precomputed vectors and their records, read in order, in batches, resumably.

    ``dimension`` and ``total`` (records across all files) come from the file headers;
    ``document_encoder`` is the model that made the vectors and ``query_encoder`` the one to embed
    queries with (None when the source does not say). ``files`` lists the vector files in reading
    order. ``warnings`` and ``skipped`` fill while :meth:`batches` runs. ``metric`` is the
    similarity the vectors were trained for: ``cosine``, or ``ip`` (inner product of unnormalised
    vectors, as MedCPT's).
    """

    fmt: str
    metric: str = "cosine"

    def __init__(
        self,
        path: Path,
        files: Sequence[Path],
        rows: Sequence[int],
        dimension: int,
        document_encoder: str | None,
        query_encoder: str | None,
    ) -> None:
        self.path = path
        self.files = tuple(files)
        self._rows = tuple(rows)
        self.dimension = dimension
        self.total = sum(rows)
        self.document_encoder = document_encoder
        self.query_encoder = query_encoder
        self.warnings: list[str] = []
        self.skipped = 0

    def batches(self, batch_size: int = 1000, *, skip: int = 0) -> Iterator[list[ImportedRecord]]:
        """Lists of at most ``batch_size`` records, in source order, from row ``skip`` on.

        ``skip`` counts rows of the source, skipped records included, so resuming with the number
        of records already stored never passes over one that is not. Files wholly before ``skip``
        are not read.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
            raise ConfigurationError(f"skip must be a non-negative integer, got {skip!r}")
        if skip > self.total:
            raise VectorImportError(
                f"cannot skip {skip} records: {self.path} holds {self.total}; resume with a "
                "smaller skip or check that the index was filled from this source"
            )
        return self._batches(batch_size, skip)

    def _batches(self, batch_size: int, skip: int) -> Iterator[list[ImportedRecord]]:
        pending: list[ImportedRecord] = []
        offset = 0
        for part, rows in enumerate(self._rows):
            if skip < offset + rows:
                for record in self._read(part, max(skip - offset, 0), batch_size):
                    pending.append(record)
                    if len(pending) == batch_size:
                        yield pending
                        pending = []
            offset += rows
        if pending:
            yield pending

    @abstractmethod
    def _read(self, part: int, start: int, batch_size: int) -> Iterator[ImportedRecord]:
        """The records of file ``part`` from its row ``start``, ``batch_size`` rows at a time."""


def open_vector_source(
    path: Path | str,
    fmt: VectorFormat,
    *,
    encoder: str | None = None,
    query_encoder: str | None = None,
) -> VectorSource:
    """Open ``path`` as a ``medcpt`` folder or a ``parquet`` file or folder (see the module doc).

    ``encoder`` and ``query_encoder`` name the document and query models, overriding what the
    source records (e.g. a local copy of the MedCPT models); a parquet source that names no query
    model is queried with its document model. Every file is checked to exist and its header read.
    """
    path = Path(path)
    if not path.exists():
        raise VectorImportError(f"no such file or folder: {path}")
    if fmt == "medcpt":
        return MedcptSource(path, encoder=encoder, query_encoder=query_encoder)
    if fmt == "parquet":
        return ParquetSource(path, encoder=encoder, query_encoder=query_encoder)
    raise ConfigurationError(f"vector format {fmt!r} is not one of {', '.join(VECTOR_FORMATS)}")


# MedCPT -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    number: int
    embeds: Path
    pmids: Path
    articles: Path


def _find_chunks(folder: Path) -> list[_Chunk]:
    found: dict[int, dict[str, Path]] = {}
    for entry in folder.iterdir():
        match = _CHUNK_FILE.fullmatch(entry.name)
        if match is None or _CHUNK_KINDS[match.group(1)] != match.group(3):
            continue
        kind, number = match.group(1), int(match.group(2))
        files = found.setdefault(number, {})
        if kind in files:
            raise VectorImportError(
                f"{folder}: {files[kind].name} and {entry.name} are both chunk {number}; "
                "keep one of them"
            )
        files[kind] = entry
    if not found:
        raise VectorImportError(
            f"{folder} holds no embeds_chunk_N.npy, pmids_chunk_N.json or pubmed_chunk_N.json "
            f"files; download the chunks from {MEDCPT_URL}"
        )
    chunks = []
    for number in sorted(found):
        files = found[number]
        for kind, extension in _CHUNK_KINDS.items():
            if kind not in files:
                missing = folder / f"{kind}_chunk_{number}.{extension}"
                raise VectorImportError(
                    f"{missing} is missing: chunk {number} needs all three files; download it "
                    f"from {MEDCPT_URL} or remove the chunk's other files"
                )
        chunks.append(_Chunk(number, files["embeds"], files["pmids"], files["pubmed"]))
    return chunks


def _open_npy(path: Path) -> np.ndarray[Any, Any]:
    """``path`` memory-mapped (read-only), checked to be a 2-d array of floats."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        raise VectorImportError(
            f"{path} is not a readable .npy array ({error}); download it again"
        ) from error
    if getattr(array, "ndim", None) != 2:  # an .npz archive has no ndim
        shape = getattr(array, "shape", "none")
        raise VectorImportError(
            f"{path} must hold one 2-d array (rows x dimension), found shape {shape}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise VectorImportError(f"{path} holds {array.dtype} values; the vectors must be floats")
    return array


def _load_json(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise VectorImportError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            "download it again"
        ) from error
    except (OSError, UnicodeDecodeError) as error:
        raise VectorImportError(f"cannot read {path} ({error}); download it again") from error


def _pmid_text(value: object) -> str | None:
    """A PMID from a string or integer of digits, else None."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text if text.isdigit() else None


def _medcpt_year(date: str) -> int | None:
    match = _YEAR.match(date.strip())
    return int(match.group()) if match else None


def _mesh_descriptors(terms: str) -> str:
    """``"a!|a!b*|c*|"`` (MedCPT's ``m``) as ``"a; c"``: each descriptor once, in order."""
    names: dict[str, None] = {}
    for term in terms.split("|"):
        name = term.split("!", 1)[0].strip().rstrip("*").strip()
        if name:
            names[name] = None
    return "; ".join(names)


def _record_text(record: dict[str, Any], key: str, path: Path, pmid: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise VectorImportError(
            f"{path}: the record of PMID {pmid} has a {type(value).__name__} {key!r}, not a "
            "string; download the file again"
        )
    return value.strip()


class MedcptSource(VectorSource):
    """NCBI's MedCPT PubMed embeddings: a folder of ``embeds/pmids/pubmed_chunk_N`` files.

    Each record is one article: ``source_id`` and ``pmid`` the PMID, ``text`` its abstract (its
    title when it has none), ``title``, ``year`` from ``d`` and the MeSH descriptors of ``m`` in
    ``extra["mesh"]``.
    """

    fmt = "medcpt"
    metric = "ip"  # MedCPT ranks by the inner product of its unnormalised vectors

    def __init__(
        self, path: Path, *, encoder: str | None = None, query_encoder: str | None = None
    ) -> None:
        if not path.is_dir():
            raise VectorImportError(
                f"{path} is not a folder; the medcpt format reads the folder that holds "
                "embeds_chunk_N.npy, pmids_chunk_N.json and pubmed_chunk_N.json"
            )
        self._chunks = _find_chunks(path)
        rows: list[int] = []
        dimension: int | None = None
        for chunk in self._chunks:
            shape = _open_npy(chunk.embeds).shape
            if dimension is not None and shape[1] != dimension:
                first = self._chunks[0].embeds.name
                raise VectorImportError(
                    f"{chunk.embeds} holds {shape[1]}-d vectors but {first} holds {dimension}-d "
                    "ones; every chunk must come from the same model"
                )
            dimension = shape[1]
            rows.append(shape[0])
        assert dimension is not None  # _find_chunks returns at least one chunk
        super().__init__(
            path,
            [chunk.embeds for chunk in self._chunks],
            rows,
            dimension,
            encoder or MEDCPT_ARTICLE_ENCODER,
            query_encoder or MEDCPT_QUERY_ENCODER,
        )

    def _read(self, part: int, start: int, batch_size: int) -> Iterator[ImportedRecord]:
        chunk = self._chunks[part]
        rows = self._rows[part]
        pmids = self._pmids(chunk, rows)
        articles = _load_json(chunk.articles)
        if not isinstance(articles, dict):
            raise VectorImportError(
                f"{chunk.articles} must hold a JSON object mapping PMIDs to article records, "
                f"found a {type(articles).__name__}; download it again"
            )
        if len(articles) > rows:
            raise VectorImportError(
                f"{chunk.articles} holds {len(articles)} articles but {chunk.pmids.name} lists "
                f"{rows} PMIDs; the files of chunk {chunk.number} must come from the same "
                "release (download them again)"
            )
        embeds = _open_npy(chunk.embeds)
        resolved = str(chunk.articles.resolve())
        skips = _Skips()
        missing = f"no article record in {chunk.articles.name}"
        for begin in range(start, rows, batch_size):
            block = np.array(embeds[begin : begin + batch_size], dtype=np.float32)
            finite = np.asarray(np.isfinite(block).all(axis=1))
            for offset, pmid in enumerate(pmids[begin : begin + batch_size]):
                record = articles.get(pmid)
                if record is None:
                    skips.add(missing, pmid)
                    continue
                if not isinstance(record, dict):
                    raise VectorImportError(
                        f"{chunk.articles}: the record of PMID {pmid} is a "
                        f"{type(record).__name__}, not an object; download the file again"
                    )
                document = self._document(record, pmid, chunk.articles, resolved)
                if document is None:
                    skips.add("no title or abstract", pmid)
                elif not finite[offset]:
                    skips.add("a vector with NaN or infinite values", pmid)
                else:
                    yield ImportedRecord(document, block[offset])
        skips.flush(self, chunk.embeds)

    @staticmethod
    def _pmids(chunk: _Chunk, rows: int) -> list[str]:
        listed = _load_json(chunk.pmids)
        if not isinstance(listed, list):
            raise VectorImportError(
                f"{chunk.pmids} must hold a JSON list of PMIDs, found a "
                f"{type(listed).__name__}; download it again"
            )
        if len(listed) != rows:
            raise VectorImportError(
                f"{chunk.pmids} lists {len(listed)} PMIDs but {chunk.embeds.name} holds {rows} "
                f"vectors; the files of chunk {chunk.number} must come from the same release "
                "(download them again)"
            )
        pmids = []
        for position, value in enumerate(listed):
            pmid = _pmid_text(value)
            if pmid is None:
                raise VectorImportError(
                    f"{chunk.pmids}: item {position} is {value!r}, not a PMID (digits); "
                    "download the file again"
                )
            pmids.append(pmid)
        return pmids

    @staticmethod
    def _document(record: dict[str, Any], pmid: str, path: Path, resolved: str) -> Document | None:
        title = _record_text(record, "t", path, pmid)
        abstract = _record_text(record, "a", path, pmid)
        if not title and not abstract:
            return None
        mesh = _mesh_descriptors(_record_text(record, "m", path, pmid))
        return Document(
            source_id=pmid,
            pmid=pmid,
            title=title or None,
            year=_medcpt_year(_record_text(record, "d", path, pmid)),
            path=resolved,
            text=abstract or title,
            extra={"mesh": mesh} if mesh else {},
        )


# Parquet ----------------------------------------------------------------------------------------


def _pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or a clear error when pyarrow is not installed."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as error:
        raise VectorImportError(
            "reading parquet vectors needs pyarrow; install it (pip install pyarrow)"
        ) from error
    return pyarrow, pyarrow.parquet


def _is_text(kind: pyarrow.DataType) -> bool:
    import pyarrow.types as types

    return bool(types.is_string(kind) or types.is_large_string(kind) or types.is_string_view(kind))


def _column_problem(name: str, kind: pyarrow.DataType) -> str | None:
    """Why column ``name`` of type ``kind`` cannot be read, or None when it can."""
    import pyarrow.types as types

    if types.is_null(kind) and name in _OPTIONAL_COLUMNS:
        return None
    if name == "vector":
        lists = types.is_list(kind) or types.is_large_list(kind) or types.is_fixed_size_list(kind)
        if lists and types.is_floating(kind.value_type):
            return None
        return "must be a list of floats (list<float> or fixed_size_list<float>)"
    if name in ("id", "pmid"):
        return None if _is_text(kind) or types.is_integer(kind) else "must be strings or integers"
    if name == "year":
        return None if types.is_integer(kind) or _is_text(kind) else "must be integers"
    if name == "authors":
        lists = types.is_list(kind) or types.is_large_list(kind)
        if _is_text(kind) or (lists and _is_text(kind.value_type)):
            return None
        return 'must be a list of strings or one "; "-joined string'
    return None if _is_text(kind) else "must be strings"


@dataclass(frozen=True)
class _ParquetFile:
    path: Path
    columns: tuple[str, ...]
    row_groups: tuple[int, ...]
    fixed_dimension: int | None
    metadata: dict[str, str]


def _parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(entry for entry in path.glob("*.parquet") if entry.is_file())
    if not files:
        raise VectorImportError(
            f"{path} holds no .parquet files; give a parquet file or a folder of them"
        )
    return files


def _inspect_parquet(path: Path) -> _ParquetFile:
    pyarrow, parquet = _pyarrow()
    try:
        with parquet.ParquetFile(path) as handle:
            schema = handle.schema_arrow
            groups = tuple(
                handle.metadata.row_group(i).num_rows for i in range(handle.num_row_groups)
            )
    except (pyarrow.ArrowException, OSError) as error:
        raise VectorImportError(f"{path} is not a readable parquet file ({error})") from error
    for name in _REQUIRED_COLUMNS:
        if name not in schema.names:
            raise VectorImportError(
                f"{path} has no {name!r} column; a parquet vector file needs the columns "
                f"{', '.join(_REQUIRED_COLUMNS)}"
            )
    columns = [name for name in (*_REQUIRED_COLUMNS, *_OPTIONAL_COLUMNS) if name in schema.names]
    for name in columns:
        if schema.names.count(name) > 1:
            raise VectorImportError(f"{path} has more than one {name!r} column; keep one")
        kind = schema.field(name).type
        problem = _column_problem(name, kind)
        if problem:
            raise VectorImportError(f"{path}: column {name!r} is {kind}; it {problem}")
    vector_type = schema.field("vector").type
    fixed = vector_type.list_size if pyarrow.types.is_fixed_size_list(vector_type) else None
    metadata = {
        key.decode("utf-8", "replace"): value.decode("utf-8", "replace")
        for key, value in (schema.metadata or {}).items()
    }
    return _ParquetFile(path, tuple(columns), groups, fixed, metadata)


def _first_vector_length(info: _ParquetFile) -> int | None:
    """The length of the first non-null vector of a file whose vectors are plain lists."""
    _, parquet = _pyarrow()
    import pyarrow.compute as compute

    with parquet.ParquetFile(info.path) as handle:
        for batch in handle.iter_batches(batch_size=1, columns=["vector"]):
            lengths = compute.list_value_length(batch.column(0)).drop_null()
            if len(lengths):
                return int(lengths[0].as_py())
    return None


def _named(files: Sequence[_ParquetFile], key: str) -> str | None:
    """The model that the files' ``key`` metadata names; an error when two files disagree."""
    named = [(info.path, info.metadata[key]) for info in files if info.metadata.get(key)]
    for path, value in named[1:]:
        if value != named[0][1]:
            raise VectorImportError(
                f"{named[0][0]} names {key} {named[0][1]!r} but {path} names {value!r}; the "
                "vectors of one import must come from one model (split the import, or pass "
                "--encoder / --query-encoder if they do)"
            )
    return named[0][1] if named else None


def _optional_text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _parquet_year(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 1000 <= value <= 9999 else None
    match = _YEAR.search(value) if isinstance(value, str) else None
    return int(match.group()) if match else None


def _parquet_authors(value: Any) -> tuple[str, ...]:
    """Names from a list of strings or one ``"; "``-joined string."""
    names: list[Any] = value.split(";") if isinstance(value, str) else list(value or [])
    return tuple(name.strip() for name in names if isinstance(name, str) and name.strip())


class ParquetSource(VectorSource):
    """A parquet table of ``id``, ``text``, ``vector`` and optional metadata columns."""

    fmt = "parquet"

    def __init__(
        self, path: Path, *, encoder: str | None = None, query_encoder: str | None = None
    ) -> None:
        self._files = [_inspect_parquet(file) for file in _parquet_files(path)]
        dimension: int | None = None
        dimension_file: Path | None = None
        for info in self._files:
            length = info.fixed_dimension
            if length is None and dimension is None and sum(info.row_groups) > 0:
                length = _first_vector_length(info)
            if length is None:
                continue
            if dimension is not None and length != dimension:
                raise VectorImportError(
                    f"{info.path} holds {length}-d vectors but {dimension_file} holds "
                    f"{dimension}-d ones; every file must come from the same model"
                )
            dimension, dimension_file = length, info.path
        if dimension is None:
            raise VectorImportError(f"{path} holds no vectors; nothing to import")
        document_encoder = encoder or _named(self._files, ENCODER_KEY)
        super().__init__(
            path,
            [info.path for info in self._files],
            [sum(info.row_groups) for info in self._files],
            dimension,
            document_encoder,
            query_encoder or _named(self._files, QUERY_ENCODER_KEY) or document_encoder,
        )

    def _read(self, part: int, start: int, batch_size: int) -> Iterator[ImportedRecord]:
        _, parquet = _pyarrow()
        info = self._files[part]
        first_group, row = 0, 0
        while row + info.row_groups[first_group] <= start:
            row += info.row_groups[first_group]
            first_group += 1
        drop = start - row
        resolved = str(info.path.resolve())
        skips = _Skips()
        with parquet.ParquetFile(info.path) as handle:
            batches = handle.iter_batches(
                batch_size=batch_size,
                row_groups=list(range(first_group, len(info.row_groups))),
                columns=list(info.columns),
            )
            for batch in batches:
                if drop >= batch.num_rows:
                    drop -= batch.num_rows
                    row += batch.num_rows
                    continue
                if drop:
                    batch, row, drop = batch.slice(drop), row + drop, 0
                yield from self._records(batch, row, info, resolved, skips)
                row += batch.num_rows
        skips.flush(self, info.path)

    def _records(
        self,
        batch: pyarrow.RecordBatch,
        first_row: int,
        info: _ParquetFile,
        resolved: str,
        skips: _Skips,
    ) -> Iterator[ImportedRecord]:
        ids = batch.column("id").to_pylist()
        texts = batch.column("text").to_pylist()
        vectors, present = self._vectors(batch, first_row, info, ids)
        finite = np.asarray(np.isfinite(vectors).all(axis=1))
        columns = {
            name: batch.column(name).to_pylist()
            for name in info.columns
            if name in _OPTIONAL_COLUMNS
        }
        for offset, identifier in enumerate(ids):
            source_id = _optional_text(identifier)
            if source_id is None:
                raise VectorImportError(
                    f"{info.path}: row {first_row + offset} has no 'id'; every record needs one"
                )
            text = texts[offset]
            if not isinstance(text, str) or not text.strip():
                skips.add("no text", source_id)
                continue
            position = present[offset]
            if position < 0 or not finite[position]:
                skips.add("no vector, or one with NaN or infinite values", source_id)
                continue
            document = self._document(columns, offset, source_id, text, info, first_row, resolved)
            yield ImportedRecord(document, vectors[position])

    def _vectors(
        self, batch: pyarrow.RecordBatch, first_row: int, info: _ParquetFile, ids: list[Any]
    ) -> tuple[FloatVector, npt.NDArray[np.intp]]:
        """The batch's non-null vectors as a float32 matrix, and each row's index into it (-1)."""
        import pyarrow.compute as compute

        column = batch.column("vector")
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        kept = column.filter(column.is_valid()) if column.null_count else column
        if info.fixed_dimension is None:
            lengths = compute.list_value_length(kept).to_numpy(zero_copy_only=False)
            wrong = np.flatnonzero(lengths != self.dimension)
            if len(wrong):
                row = int(np.flatnonzero(valid)[wrong[0]])
                raise VectorImportError(
                    f"{info.path}: the vector of row {first_row + row} (id {ids[row]!r}) has "
                    f"{int(lengths[wrong[0]])} values, the others {self.dimension}; every vector "
                    "must come from the same model"
                )
        values = kept.flatten().to_numpy(zero_copy_only=False)
        matrix = np.asarray(values, dtype=np.float32).reshape(-1, self.dimension)
        positions = np.full(len(valid), -1, dtype=np.intp)
        positions[valid] = np.arange(matrix.shape[0], dtype=np.intp)
        return matrix, positions

    @staticmethod
    def _document(
        columns: dict[str, list[Any]],
        offset: int,
        source_id: str,
        text: str,
        info: _ParquetFile,
        first_row: int,
        resolved: str,
    ) -> Document:
        def value(name: str) -> Any:
            return columns[name][offset] if name in columns else None

        pmid = _optional_text(value("pmid"))
        if pmid is not None and not pmid.isdigit():
            raise VectorImportError(
                f"{info.path}: row {first_row + offset} (id {source_id!r}) has pmid {pmid!r}; a "
                "PMID is digits only"
            )
        return Document(
            source_id=source_id,
            title=_optional_text(value("title")),
            authors=_parquet_authors(value("authors")),
            year=_parquet_year(value("year")),
            journal=_optional_text(value("journal")),
            pmid=pmid,
            doi=_optional_text(value("doi")),
            url=_optional_text(value("url")),
            path=resolved,
            text=text,
        )


__all__ = [
    "MEDCPT_ARTICLE_ENCODER",
    "MEDCPT_QUERY_ENCODER",
    "VECTOR_FORMATS",
    "ImportedRecord",
    "MedcptSource",
    "ParquetSource",
    "VectorImportError",
    "VectorSource",
    "open_vector_source",
]
