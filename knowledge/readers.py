"""Readers that turn literature files into :class:`~medgraph.knowledge.types.Document` records.

Supported inputs (the format is sniffed from the content; the file extension only breaks ties):

- ``pubmedqa``: PubMedQA-style JSON lines (``pmid``, ``year``, ``mesh``, ``sections``).
- ``pubmed-xml``: PubMed/MEDLINE XML as NCBI efetch returns it (``<PubmedArticleSet>``).
- ``pdf``: text-bearing PDF files (page numbers kept).
- ``text``: Markdown, reStructuredText or any UTF-8 text (sections from headings).
- ``jsonl``: generic JSON lines with ``id``, ``text`` and optional ``metadata``.

A file is read whole or not at all: a malformed record anywhere in it fails the file (the reason
names the line or record), so an index is never fed half a file. :func:`read_paths` collects such
failures and keeps reading the other files.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medgraph.errors import IngestError
from medgraph.knowledge.types import Document

FORMATS = ("auto", "pubmedqa", "pubmed-xml", "pdf", "text", "jsonl")

_SNIFF_BYTES = 64 * 1024
_MAX_SNIFF_LINE = 16 * 1024 * 1024
_TEXT_EXTENSIONS = frozenset({".md", ".markdown", ".txt", ".text", ".rst"})
_JSON_EXTENSIONS = frozenset({".jsonl", ".ndjson", ".json"})
_MAX_TITLE_LINE = 200
_SECTION_SEPARATOR = "\n\n"

_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip-compressed; decompress it first (gunzip FILE)"),
    (
        b"PK\x03\x04",
        "a zip archive (or .docx/.epub); extract it or convert it to PDF or text first",
    ),
    (b"\x89PNG", "a PNG image, not literature text"),
    (b"\xff\xd8\xff", "a JPEG image, not literature text"),
    (b"\xff\xfe", "UTF-16 text; convert it to UTF-8 first (e.g. iconv -f UTF-16 -t UTF-8)"),
    (b"\xfe\xff", "UTF-16 text; convert it to UTF-8 first (e.g. iconv -f UTF-16 -t UTF-8)"),
)


class FileReadError(IngestError):
    """A literature file could not be read; ``path`` is the file and ``reason`` says why."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class ReadFailure:
    """A file that could not be read, with a sentence saying what is wrong and how to fix it."""

    path: str
    reason: str


@dataclass
class ReadResult:
    """Everything :func:`read_paths` found: documents, per-file failures and every file considered.

    ``files`` lists the resolved path of each existing file that was looked at, read or failed, so
    an index can prune documents whose file has disappeared.
    """

    documents: list[Document]
    failures: list[ReadFailure]
    files: list[str]


# --------------------------------------------------------------------------------------------------
# Format detection


def detect_format(path: Path) -> str:
    """Return the format of ``path`` (one of :data:`FORMATS` except ``"auto"``) from its content.

    The first bytes and the first JSON line decide; the extension only breaks ties (for example a
    Markdown file that starts with an HTML tag). Raises :class:`IngestError` naming the file when
    the file is missing, empty, or in no supported format.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
            complete = len(head) < _SNIFF_BYTES or not handle.read(1)
            first_line = b""
            if complete:
                first_line = _first_nonblank_line(head)
            else:
                handle.seek(0)
                while not first_line.strip():
                    line = handle.readline(_MAX_SNIFF_LINE)
                    if not line:
                        break
                    first_line = line
    except IsADirectoryError:
        raise FileReadError(path, "is a folder, not a file (read_paths reads folders)") from None
    except FileNotFoundError:
        raise FileReadError(path, "no such file") from None
    except OSError as exc:
        raise FileReadError(path, f"cannot be read: {exc.strerror or exc}") from None
    return _detect(path, head, complete, first_line)


def _first_nonblank_line(data: bytes) -> bytes:
    start = 0
    while start < len(data):
        newline = data.find(b"\n", start)
        end = len(data) if newline < 0 else newline
        if data[start:end].strip():
            return data[start:end]
        start = end + 1
    return b""


def _detect(path: Path, head: bytes, complete: bool, first_line: bytes) -> str:
    """Sniff the format from a file's first bytes (``complete``: ``head`` is the whole file)."""
    if not head.strip():
        raise FileReadError(path, "empty file")
    if b"%PDF-" in head[:1024]:
        return "pdf"
    for signature, description in _BINARY_SIGNATURES:
        if head.startswith(signature):
            raise FileReadError(path, f"unsupported format: {description}")
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        sample = decoder.decode(head, final=complete)
    except UnicodeDecodeError as exc:
        raise FileReadError(
            path,
            f"unsupported format: not UTF-8 text (invalid byte at offset {exc.start}) and not a "
            "PDF, PubMed XML or JSON lines; convert text to UTF-8 (e.g. iconv -t UTF-8)",
        ) from None
    if _looks_binary(sample):
        raise FileReadError(
            path,
            "unsupported format: binary data, not PDF, PubMed XML, JSON lines or UTF-8 text",
        )
    stripped = sample.lstrip()
    if not stripped:
        raise FileReadError(path, "empty file")
    extension = path.suffix.lower()
    if stripped.startswith("<"):
        root = _xml_root_name(stripped)
        if root == "PubmedArticleSet":
            return "pubmed-xml"
        if extension in _TEXT_EXTENSIONS:
            return "text"
        what = f"XML or HTML whose root element is <{root}>" if root else "XML or HTML"
        raise FileReadError(
            path,
            f"unsupported format: {what}; only PubMed efetch XML (<PubmedArticleSet>) is read — "
            "save other markup as text or PDF first",
        )
    if stripped.startswith("{"):
        return _detect_json_lines(path, first_line, extension)
    if stripped.startswith("[") and extension in _JSON_EXTENSIONS:
        raise FileReadError(
            path,
            "unsupported format: a JSON array; write one JSON object per line (JSON lines) instead",
        )
    return "text"


def _looks_binary(sample: str) -> bool:
    if "\x00" in sample:
        return True
    controls = sum(1 for char in sample if char < " " and char not in "\t\n\r\f\v")
    return controls > max(8, len(sample) // 10)


_XML_ROOT = re.compile(r"<(?:!DOCTYPE\s+|(?![?!]))([A-Za-z_][\w.:-]*)")


def _xml_root_name(text: str) -> str | None:
    """Name of the DOCTYPE or first element in ``text``, skipping the prolog and comments."""
    without_comments = re.sub(r"<!--.*?-->", "", text[:_SNIFF_BYTES], flags=re.DOTALL)
    match = _XML_ROOT.search(without_comments)
    return match.group(1) if match else None


def _detect_json_lines(path: Path, first_line: bytes, extension: str) -> str:
    try:
        record = json.loads(first_line.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        if extension in _JSON_EXTENSIONS:
            raise FileReadError(
                path, f"line 1 is not valid JSON ({exc}); write one JSON object per line"
            ) from None
        return "text"
    if not isinstance(record, dict):
        return "text"
    if "sections" in record and "pmid" in record:
        return "pubmedqa"
    if "id" in record and "text" in record:
        return "jsonl"
    keys = ", ".join(sorted(record)[:8]) or "none"
    raise FileReadError(
        path,
        "unsupported format: JSON lines whose first record has neither 'pmid'+'sections' "
        f"(PubMedQA) nor 'id'+'text' (generic JSONL); keys found: {keys}",
    )


# --------------------------------------------------------------------------------------------------
# Reading files


def read_file(path: Path, fmt: str = "auto") -> list[Document]:
    """Read every document in one file; ``fmt`` is one of :data:`FORMATS`.

    Raises :class:`IngestError` naming the file and the reason when the file is missing, empty,
    unsupported or corrupt; nothing is returned from a file that fails part-way.
    """
    if fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r} for {path}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    if path.is_dir():
        raise FileReadError(path, "is a folder, not a file (read_paths reads folders)")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileReadError(path, "no such file") from None
    except OSError as exc:
        raise FileReadError(path, f"cannot be read: {exc.strerror or exc}") from None
    if not data.strip():
        raise FileReadError(path, "empty file")
    if fmt == "auto":
        fmt = _detect(
            path, data[:_SNIFF_BYTES], len(data) <= _SNIFF_BYTES, _first_nonblank_line(data)
        )
    reader = _READERS[fmt]
    return reader(path, data)


def _decode_utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileReadError(
            path,
            f"not UTF-8 text (invalid byte at offset {exc.start}); convert it to UTF-8 "
            "(e.g. iconv -f LATIN1 -t UTF-8)",
        ) from None


def _json_lines(path: Path, data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line; a bad line fails the file."""
    text = _decode_utf8(path, data)
    # split on "\n" only: JSON strings may hold U+2028 and other characters splitlines() cuts at
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise FileReadError(
                path, f"line {number} is not valid JSON ({exc}); the file was not read"
            ) from None
        if not isinstance(record, dict):
            raise FileReadError(
                path, f"line {number} is a JSON {type(record).__name__}, not an object"
            )
        yield number, record


def _join_sections(
    parts: Sequence[tuple[str, str]],
) -> tuple[str, tuple[tuple[str, int, int], ...]]:
    """Join (label, text) parts into ``"LABEL: text"`` paragraphs, recording each text's range."""
    pieces: list[str] = []
    ranges: list[tuple[str, int, int]] = []
    offset = 0
    for label, body in parts:
        if pieces:
            pieces.append(_SECTION_SEPARATOR)
            offset += len(_SECTION_SEPARATOR)
        prefix = f"{label}: " if label else ""
        pieces.append(prefix + body)
        start = offset + len(prefix)
        ranges.append((label, start, start + len(body)))
        offset = start + len(body)
    return "".join(pieces), tuple(ranges)


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _parse_year(value: Any) -> int | None:
    """A year from an int or a string holding a 4-digit year; ``None`` when there is none."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if 1000 <= value <= 9999 else None
    match = re.search(r"(?<!\d)(\d{4})(?!\d)", str(value))
    return int(match.group(1)) if match else None


def _parse_authors(value: Any) -> tuple[str, ...] | None:
    """Authors from a list of names or one name; ``None`` when the value has another shape."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value.strip(),) if value.strip() else ()
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return tuple(name.strip() for name in value if name.strip())
    return None


def _extra_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "; ".join(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _read_pubmedqa(path: Path, data: bytes) -> list[Document]:
    resolved = str(path.resolve())
    documents: list[Document] = []
    for number, record in _json_lines(path, data):
        where = f"line {number}"
        pmid = record.get("pmid")
        pmid_text = str(pmid).strip() if isinstance(pmid, (str, int)) else ""
        if isinstance(pmid, bool) or not pmid_text.isdigit():
            raise FileReadError(
                path, f"{where}: 'pmid' must be a PubMed id of digits, got {pmid!r}"
            )
        sections = record.get("sections")
        if not isinstance(sections, list) or not sections:
            raise FileReadError(path, f"{where}: 'sections' must be a non-empty list")
        parts: list[tuple[str, str]] = []
        for position, section in enumerate(sections, start=1):
            if not isinstance(section, dict) or not isinstance(section.get("text"), str):
                raise FileReadError(
                    path, f"{where}: section {position} must be an object with a string 'text'"
                )
            label = section.get("label")
            if label is not None and not isinstance(label, str):
                raise FileReadError(path, f"{where}: section {position} 'label' must be a string")
            body = section["text"].strip()
            if body:
                parts.append(((label or "").strip(), body))
        if not parts:
            raise FileReadError(path, f"{where}: every section's text is empty")
        authors = _parse_authors(record.get("authors"))
        if authors is None:
            raise FileReadError(path, f"{where}: 'authors' must be a list of names")
        text, ranges = _join_sections(parts)
        known = {"pmid", "year", "sections", "title", "authors", "journal", "doi"}
        extra = {
            key: _extra_value(value)
            for key, value in record.items()
            if key not in known and value is not None and value != []
        }
        documents.append(
            Document(
                source_id=pmid_text,
                pmid=pmid_text,
                title=_optional_str(record.get("title")),
                authors=authors,
                year=_parse_year(record.get("year")),
                journal=_optional_str(record.get("journal")),
                doi=_optional_str(record.get("doi")),
                path=resolved,
                text=text,
                sections=ranges,
                extra=extra,
            )
        )
    if not documents:
        raise FileReadError(path, "empty file")
    return documents


_DOCUMENT_FIELDS = ("title", "year", "journal", "authors", "doi", "pmid", "url", "licence")


def _read_generic_jsonl(path: Path, data: bytes) -> list[Document]:
    resolved = str(path.resolve())
    documents: list[Document] = []
    for number, record in _json_lines(path, data):
        where = f"line {number}"
        identifier = record.get("id")
        if isinstance(identifier, bool) or not isinstance(identifier, (str, int)):
            raise FileReadError(path, f"{where}: 'id' must be a string or integer")
        source_id = str(identifier).strip()
        if not source_id:
            raise FileReadError(path, f"{where}: 'id' is empty")
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise FileReadError(path, f"{where}: 'text' must be a non-empty string")
        metadata = record.get("metadata", {})
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise FileReadError(path, f"{where}: 'metadata' must be an object")
        # metadata fields may also sit at the top level; 'metadata' wins when both are present
        fields = {key: record[key] for key in _DOCUMENT_FIELDS if key in record}
        fields.update(metadata)
        authors = _parse_authors(fields.get("authors"))
        if authors is None:
            raise FileReadError(path, f"{where}: 'authors' must be a list of names")
        pmid = _optional_str(fields.get("pmid"))
        if pmid is not None and not pmid.isdigit():
            raise FileReadError(path, f"{where}: 'pmid' must be digits, got {pmid!r}")
        extra = {
            str(key): _extra_value(value)
            for key, value in fields.items()
            if key not in _DOCUMENT_FIELDS and value is not None
        }
        documents.append(
            Document(
                source_id=source_id,
                title=_optional_str(fields.get("title")),
                authors=authors,
                year=_parse_year(fields.get("year")),
                journal=_optional_str(fields.get("journal")),
                doi=_optional_str(fields.get("doi")),
                pmid=pmid,
                url=_optional_str(fields.get("url")),
                licence=_optional_str(fields.get("licence")),
                path=resolved,
                text=text,
                extra=extra,
            )
        )
    if not documents:
        raise FileReadError(path, "empty file")
    return documents


# PubMed XML ---------------------------------------------------------------------------------------

# efetch output starts with a DOCTYPE naming the public DTD; it is removed unresolved. Any other
# DOCTYPE (an internal subset) or ENTITY declaration is refused: entity expansion (XXE, "billion
# laughs") is the risk with untrusted XML.
_PUBMED_DOCTYPE = re.compile(
    rb"<!DOCTYPE\s+PubmedArticleSet(?:\s+(?:\"[^\"]*\"|'[^']*'|[^\s\[>]+))*\s*>"
)


def _parse_pubmed_xml(path: Path, data: bytes) -> ElementTree.Element:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise FileReadError(path, "XML is not UTF-8 (NCBI efetch returns UTF-8); convert it first")
    cleaned = _PUBMED_DOCTYPE.sub(b"", data, count=1)
    if b"<!ENTITY" in cleaned or b"<!DOCTYPE" in cleaned:
        raise FileReadError(
            path,
            "XML declares a DOCTYPE internal subset or ENTITY, which is refused (entity expansion "
            "risk); use the XML exactly as NCBI efetch returns it",
        )
    try:
        # decoding is forced to UTF-8 (efetch's encoding) whatever the XML declaration says, so the
        # byte checks above cannot be dodged with a UTF-16 or other declared encoding
        parser = ElementTree.XMLParser(encoding="utf-8")
        parser.feed(cleaned)
        root = parser.close()
    except ElementTree.ParseError as exc:
        line, column = exc.position
        raise FileReadError(
            path, f"corrupt XML at line {line}, column {column} ({exc}); the file was not read"
        ) from None
    if root.tag != "PubmedArticleSet":
        raise FileReadError(path, f"XML root is <{root.tag}>, not PubMed's <PubmedArticleSet>")
    return root


def _element_text(element: ElementTree.Element | None) -> str:
    """All text inside an element (inline markup such as <i> or <sup> flattened), trimmed."""
    if element is None:
        return ""
    return " ".join("".join(element.itertext()).split())


def _read_pubmed_xml(path: Path, data: bytes) -> list[Document]:
    root = _parse_pubmed_xml(path, data)
    resolved = str(path.resolve())
    documents: list[Document] = []
    for position, article in enumerate(root.iter("PubmedArticle"), start=1):
        citation = article.find("MedlineCitation")
        pmid = _element_text(citation.find("PMID")) if citation is not None else ""
        if citation is None or not pmid.isdigit():
            raise FileReadError(
                path, f"PubmedArticle {position} has no numeric MedlineCitation/PMID (got {pmid!r})"
            )
        documents.append(_pubmed_document(citation, article, pmid, resolved))
    if not documents:
        raise FileReadError(path, "no <PubmedArticle> records in the PubmedArticleSet")
    return documents


def _pubmed_document(
    citation: ElementTree.Element, article: ElementTree.Element, pmid: str, resolved: str
) -> Document:
    record = citation.find("Article")
    title = _element_text(record.find("ArticleTitle")) if record is not None else ""
    if not title and record is not None:
        title = _element_text(record.find("VernacularTitle"))
    parts: list[tuple[str, str]] = []
    for abstract_text in citation.iterfind("Article/Abstract/AbstractText"):
        body = _element_text(abstract_text)
        if body:
            label = abstract_text.get("Label") or abstract_text.get("NlmCategory") or ""
            parts.append((label.strip(), body))
    text, ranges = _join_sections(parts)

    authors: list[str] = []
    for author in citation.iterfind("Article/AuthorList/Author"):
        if author.get("ValidYN") == "N":
            continue
        collective = _element_text(author.find("CollectiveName"))
        last_name = _element_text(author.find("LastName"))
        initials = _element_text(author.find("Initials")) or _element_text(author.find("ForeName"))
        if last_name:
            authors.append(f"{last_name} {initials}".strip())
        elif collective:
            authors.append(collective)

    journal_title = _element_text(citation.find("Article/Journal/Title"))
    abbreviation = _element_text(citation.find("Article/Journal/ISOAbbreviation"))
    pub_date = citation.find("Article/Journal/JournalIssue/PubDate")
    year = None
    if pub_date is not None:
        year = _parse_year(_element_text(pub_date.find("Year"))) or _parse_year(
            _element_text(pub_date.find("MedlineDate"))
        )

    doi = None
    for article_id in article.iterfind("PubmedData/ArticleIdList/ArticleId"):
        if article_id.get("IdType") == "doi" and _element_text(article_id):
            doi = _element_text(article_id)
            break
    if doi is None:
        for location in citation.iterfind("Article/ELocationID"):
            if location.get("EIdType") == "doi" and _element_text(location):
                doi = _element_text(location)
                break

    extra: dict[str, str] = {}
    mesh = [
        _element_text(name)
        for name in citation.iterfind("MeshHeadingList/MeshHeading/DescriptorName")
    ]
    if mesh:
        extra["mesh"] = "; ".join(term for term in mesh if term)
    if abbreviation:
        extra["journal_abbreviation"] = abbreviation
    return Document(
        source_id=pmid,
        pmid=pmid,
        title=title or None,
        authors=tuple(authors),
        year=year,
        journal=journal_title or abbreviation or None,
        doi=doi,
        path=resolved,
        text=text,
        sections=ranges,
        extra=extra,
    )


# PDF ----------------------------------------------------------------------------------------------


def _read_pdf(path: Path, data: bytes) -> list[Document]:
    from pypdf import PdfReader

    # pypdf logs each repair it attempts ("EOF marker not found"); the failure reason says enough
    pdf_logger = logging.getLogger("pypdf")
    previous_level = pdf_logger.level
    pdf_logger.setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                unlocked = bool(reader.decrypt(""))
            except Exception:  # pypdf raises several error types (e.g. a missing AES dependency)
                unlocked = False
            if not unlocked:
                raise FileReadError(
                    path, "encrypted PDF; remove the password first (e.g. qpdf --decrypt)"
                )
        page_texts = [page.extract_text() or "" for page in reader.pages]
        metadata = reader.metadata
        metadata_title = metadata.title if metadata is not None else None
    except FileReadError:
        raise
    except Exception as exc:  # damaged PDFs surface as many pypdf and stdlib error types
        raise FileReadError(
            path, f"corrupt or unreadable PDF ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        pdf_logger.setLevel(previous_level)

    pieces: list[str] = []
    pages: list[tuple[int, int, int]] = []
    offset = 0
    for number, raw in enumerate(page_texts, start=1):
        page_text = raw.replace("\r\n", "\n").replace("\r", "\n").strip()
        if not page_text:
            continue
        if pieces:
            pieces.append(_SECTION_SEPARATOR)
            offset += len(_SECTION_SEPARATOR)
        pieces.append(page_text)
        pages.append((number, offset, offset + len(page_text)))
        offset += len(page_text)
    if not pages:
        raise FileReadError(path, "no extractable text (scanned PDF? run OCR first)")
    title = _optional_str(metadata_title) if isinstance(metadata_title, str) else None
    resolved = str(path.resolve())
    return [
        Document(
            source_id=resolved,
            title=title or path.name,
            path=resolved,
            text="".join(pieces),
            pages=tuple(pages),
        )
    ]


# Markdown and text --------------------------------------------------------------------------------

_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(?P<label>.*?)(?:[ \t]+#+)?[ \t]*$")
_UNDERLINE = re.compile(r"^ {0,3}([=\-~^*+#\"'`:._])\1{2,}[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(?P<title>.+?)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class _Heading:
    label: str
    start: int  # first character of the heading (or its overline)
    body_start: int  # first character after the heading's last line


def _lines_with_offsets(text: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    offset = 0
    for line in text.split("\n"):
        lines.append((offset, line))
        offset += len(line) + 1
    return lines


def _front_matter(text: str) -> tuple[int, str | None]:
    """End offset and title of a leading ``---`` YAML front matter block (0 and None if absent)."""
    if not text.startswith("---\n"):
        return 0, None
    closing = re.search(r"^(?:---|\.\.\.)[ \t]*$", text[4:], flags=re.MULTILINE)
    if closing is None:
        return 0, None
    end = 4 + closing.end()
    match = _FRONT_MATTER_TITLE.search(text[4 : 4 + closing.start()])
    title = match.group("title").strip("\"' ") if match else None
    return end, title or None


def _find_headings(text: str, content_start: int) -> list[_Heading]:
    """Markdown ATX (``# x``) and setext/reST (underlined) headings outside code fences."""
    lines = [item for item in _lines_with_offsets(text) if item[0] >= content_start]
    headings: list[_Heading] = []
    fence: str | None = None
    previous_was_heading = False
    index = 0
    while index < len(lines):
        offset, line = lines[index]
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            fence = marker if fence is None else (None if marker == fence else fence)
            index += 1
            previous_was_heading = False
            continue
        if fence is not None:
            index += 1
            continue
        atx = _ATX_HEADING.match(line)
        if atx and atx.group("label").strip():
            headings.append(_Heading(atx.group("label").strip(), offset, offset + len(line)))
            index += 1
            previous_was_heading = True
            continue
        if line.strip() and not _UNDERLINE.match(line) and index + 1 < len(lines):
            underline = _UNDERLINE.match(lines[index + 1][1])
            previous = lines[index - 1][1] if index > 0 else ""
            overline = bool(previous.strip()) and previous.strip() == lines[index + 1][1].strip()
            if underline and (not previous.strip() or overline or previous_was_heading):
                start = lines[index - 1][0] if overline else offset
                body_start = lines[index + 1][0] + len(lines[index + 1][1])
                headings.append(_Heading(line.strip(), start, body_start))
                index += 2
                previous_was_heading = True
                continue
        index += 1
        previous_was_heading = False
    return headings


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _read_text(path: Path, data: bytes) -> list[Document]:
    text = _decode_utf8(path, data)
    if _looks_binary(text[:_SNIFF_BYTES]):
        raise FileReadError(path, "binary data, not text")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise FileReadError(path, "empty file")
    content_start, front_title = _front_matter(text)
    headings = _find_headings(text, content_start)

    sections: list[tuple[str, int, int]] = []
    if headings or content_start:
        boundaries: list[tuple[str, int, int]] = [("", content_start, content_start)]
        boundaries += [(h.label, h.start, h.body_start) for h in headings]
        for position, (label, _, body_start) in enumerate(boundaries):
            body_end = boundaries[position + 1][1] if position + 1 < len(boundaries) else len(text)
            start, end = _trimmed(text, body_start, body_end)
            if start < end:
                sections.append((label, start, end))

    title = front_title or (headings[0].label if headings else None)
    if title is None:
        first_line = next(
            (line.strip() for line in text[content_start:].split("\n") if line.strip()), ""
        )
        title = first_line if 0 < len(first_line) <= _MAX_TITLE_LINE else path.name
    resolved = str(path.resolve())
    return [
        Document(
            source_id=resolved, title=title, path=resolved, text=text, sections=tuple(sections)
        )
    ]


_READERS = {
    "pubmedqa": _read_pubmedqa,
    "pubmed-xml": _read_pubmed_xml,
    "pdf": _read_pdf,
    "text": _read_text,
    "jsonl": _read_generic_jsonl,
}


# --------------------------------------------------------------------------------------------------
# Many paths


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _walk(paths: Sequence[Path | str]) -> Iterator[Path | ReadFailure]:
    """Yield each file to read (folders recursed, sorted, hidden entries skipped) or a failure."""
    seen_files: set[Path] = set()
    seen_dirs: set[Path] = set()

    def visit_dir(folder: Path) -> Iterator[Path | ReadFailure]:
        real = folder.resolve()
        if real in seen_dirs:  # symlink loops and folders given twice
            return
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as exc:
            yield ReadFailure(str(real), f"folder cannot be listed: {exc.strerror or exc}")
            return
        for entry in entries:
            child = Path(entry.path)
            if _is_hidden(child):
                continue
            if child.is_dir():
                yield from visit_dir(child)
            elif child.is_file():
                yield from visit_file(child)
            elif child.is_symlink():
                yield ReadFailure(
                    str(child.absolute()), "broken symbolic link (its target is gone)"
                )

    def visit_file(file: Path) -> Iterator[Path | ReadFailure]:
        real = file.resolve()
        if real not in seen_files:
            seen_files.add(real)
            yield real

    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from visit_dir(path)
        elif path.is_file():
            yield from visit_file(path)
        elif path.exists():
            yield ReadFailure(str(path.resolve()), "not a regular file or folder")
        else:
            yield ReadFailure(str(path.resolve()), "no such file or folder")


def _read_one(path: Path, fmt: str) -> list[Document] | ReadFailure:
    try:
        return read_file(path, fmt)
    except FileReadError as exc:
        return ReadFailure(str(path), exc.reason)


def iter_documents(
    paths: Sequence[Path | str], fmt: str = "auto"
) -> Iterator[Document | ReadFailure]:
    """Stream the documents of every file under ``paths``, yielding a failure for each bad file.

    A file's documents are yielded only once the whole file has been read, so a corrupt file yields
    one :class:`ReadFailure` and no documents.
    """
    if fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    for item in _walk(paths):
        if isinstance(item, ReadFailure):
            yield item
            continue
        result = _read_one(item, fmt)
        if isinstance(result, ReadFailure):
            yield result
        else:
            yield from result


def read_paths(paths: Sequence[Path | str], fmt: str = "auto") -> ReadResult:
    """Read files and folders (recursively, sorted, hidden entries skipped), collecting failures.

    Every unreadable, empty, corrupt or unsupported file, and every path that does not exist,
    becomes a :class:`ReadFailure`; the remaining files are still read.
    """
    if fmt not in FORMATS:
        raise IngestError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    result = ReadResult(documents=[], failures=[], files=[])
    for item in _walk(paths):
        if isinstance(item, ReadFailure):
            result.failures.append(item)
            continue
        result.files.append(str(item))
        outcome = _read_one(item, fmt)
        if isinstance(outcome, ReadFailure):
            result.failures.append(outcome)
        else:
            result.documents.extend(outcome)
    return result
