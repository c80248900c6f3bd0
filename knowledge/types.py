"""Value types of the literature index: documents, chunks and retrieved evidence.

All three are pydantic models so they serialise into graph state and JSON output unchanged.
Citations are rendered only from metadata that exists on the record; nothing is ever filled in.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

LINK_HOSTS = frozenset(
    {
        "pubmed.ncbi.nlm.nih.gov",
        "www.ncbi.nlm.nih.gov",
        "ncbi.nlm.nih.gov",
        "pmc.ncbi.nlm.nih.gov",
        "europepmc.org",
        "doi.org",
        "dx.doi.org",
    }
)
"""Hosts a record's ``url`` may point at (PubMed, PMC, DOI); any other link is dropped."""

UPLOAD_ORIGIN_PREFIX = "upload:"


def allowed_link(url: str | None) -> str | None:
    """``url`` when it is an http(s) URL on one of :data:`LINK_HOSTS` (no credentials, no port),
    else None: a record's link can never be ``javascript:`` or an arbitrary site."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or parts.username or port is not None:
        return None
    if (parts.hostname or "").lower() not in LINK_HOSTS:
        return None
    return url.strip()


class Document(BaseModel):
    """One literature record: an abstract, an article, a PDF or a text file.

    ``source_id`` is the stable identifier a citation points at: the bare PMID for PubMed records,
    the DOI or the given id for other records, the file path for files without one. Readers fill
    ``text`` (with section and page ranges); documents returned inside :class:`Evidence` carry
    metadata only (``text`` empty) so graph state stays small.
    """

    model_config = ConfigDict(frozen=True)

    source_id: str
    title: str | None = None
    authors: tuple[str, ...] = ()
    year: int | None = None
    journal: str | None = None
    pmid: str | None = None
    doi: str | None = None
    url: str | None = None
    licence: str | None = None
    path: str | None = None
    origin: str | None = None
    """Who added the record: None for the operator's corpus, ``upload:<key hash>`` for an upload
    through the API (the hash is a keyed hash of the uploader's API key, or ``public``)."""
    text: str = Field(default="", repr=False)
    sections: tuple[tuple[str, int, int], ...] = Field(default=(), repr=False)
    """(label, start, end) character ranges of labelled sections inside ``text``."""
    pages: tuple[tuple[int, int, int], ...] = Field(default=(), repr=False)
    """(page number, start, end) character ranges inside ``text`` for paged sources (PDF)."""
    extra: dict[str, str] = Field(default_factory=dict)

    @field_validator("url", mode="before")
    @classmethod
    def _known_link(cls, value: object) -> str | None:
        return allowed_link(value) if isinstance(value, str) else None

    @property
    def provenance(self) -> str:
        """``"corpus"`` (the operator's ingest) or ``"upload"`` (added through the API)."""
        if self.origin and self.origin.startswith(UPLOAD_ORIGIN_PREFIX):
            return "upload"
        return "corpus"

    def reference_parts(self) -> list[str]:
        """``["Author et al.", "Title.", "Journal Year."]``, from the fields that exist."""
        parts: list[str] = []
        if self.authors:
            first = self.authors[0]
            parts.append(f"{first} et al." if len(self.authors) > 1 else f"{first}.")
        if self.title:
            title = self.title.rstrip()
            parts.append(title if title.endswith((".", "?", "!")) else f"{title}.")
        venue = " ".join(p for p in (self.journal, str(self.year) if self.year else None) if p)
        if venue:
            parts.append(f"{venue}.")
        return parts

    def citation(self, number: int | None = None) -> str:
        """Render ``[n] Author et al. Title. Journal Year. PMID:...`` from the fields that exist."""
        parts = self.reference_parts()
        if self.pmid:
            parts.append(f"PMID:{self.pmid}")
        elif self.doi:
            parts.append(f"doi:{self.doi}")
        else:
            parts.append(self.source_id)
        if self.provenance == "upload":
            parts.append("(uploaded through the API, not the operator's corpus)")
        text = " ".join(parts)
        return f"[{number}] {text}" if number is not None else text

    @property
    def link(self) -> str | None:
        """A resolvable URL for the record: PubMed for PMIDs, doi.org for DOIs, else ``url``."""
        if self.pmid:
            return f"https://pubmed.ncbi.nlm.nih.gov/{self.pmid}/"
        if self.doi:
            return f"https://doi.org/{self.doi}"
        return self.url


class Chunk(BaseModel):
    """A passage of a document; ``document.text[start:end] == text`` always holds."""

    model_config = ConfigDict(frozen=True)

    chunk_id: str
    source_id: str
    index: int
    text: str
    start: int
    end: int
    section: str | None = None
    page: int | None = None


class Evidence(BaseModel):
    """A retrieved chunk with its document metadata, scores and (once cited) its number."""

    model_config = ConfigDict(frozen=True)

    chunk: Chunk
    document: Document
    score: float
    scores: dict[str, float] = Field(default_factory=dict)
    """Per-retriever scores or ranks, e.g. ``{"dense": 0.81, "lexical": 12.3, "fused": 1.9}``."""
    number: int | None = None
    flags: tuple[str, ...] = ()
    """Warnings about the passage set at retrieval, e.g. ``"instructions"`` when it holds text
    addressed to a model (:func:`medgraph.knowledge.injection.flag_instructions`)."""

    @property
    def source_id(self) -> str:
        """The cited record's identifier."""
        return self.document.source_id

    def citation(self, number: int | None = None) -> str:
        """The numbered bibliography line for this evidence."""
        return self.document.citation(number if number is not None else self.number)

    def with_number(self, number: int) -> Evidence:
        """A copy carrying citation number ``number``."""
        return self.model_copy(update={"number": number})
