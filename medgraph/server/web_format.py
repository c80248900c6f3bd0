"""Text the web chat page shows: progress labels, the cited answer and its numbered references.

Everything that comes from a question, the literature or a model is escaped before it reaches the
page: Markdown metacharacters are backslash-escaped and HTML is entity-escaped, so a title such as
``<img src=x onerror=...>`` or ``[click](javascript:...)`` shows as text and never as markup. Links
are only ever built from ``http``/``https`` URLs of ingested records.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from medgraph.graphs.state import Answer
from medgraph.knowledge.citations import Citation

PUBMED_URL = "https://pubmed.ncbi.nlm.nih.gov/{pmid}/"

# Every ASCII punctuation character that Markdown (CommonMark + GFM) may treat as syntax. "&", ";"
# and "#" are handled by entity escaping (html.escape turns "&" into "&amp;").
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>+\-.!|~=$^:\"'])")
_MARKER = re.compile(r"\[(\d+(?:\s*[,–—-]\s*\d+)*)\]")
_PMID_IN_REFERENCE = re.compile(r"PMID:\s*(\d{1,9})\b")
_QUERY_LIMIT = 160


def escape_markdown(text: str) -> str:
    """``text`` as literal characters in Markdown: no markup, no HTML, no links, no maths."""
    entity_escaped = html.escape(text, quote=False)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", entity_escaped)


def escape_html(text: str) -> str:
    """``text`` as literal characters inside an HTML block (where Markdown is not parsed).

    Newlines become spaces: a blank line would end the HTML block and hand the rest to Markdown.
    """
    return html.escape(" ".join(text.split()), quote=True)


def safe_url(url: str | None) -> str | None:
    """``url`` percent-encoded for a link; None unless it is an http(s) URL with a host."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        return None
    return quote(url.strip(), safe=":/?&=#%+@,;~!$*")


def citation_url(citation: Citation) -> str | None:
    """Where a citation's record can be read: its URL (PubMed for PMIDs), else PubMed by PMID."""
    url = safe_url(citation.url)
    if url is not None:
        return url
    match = _PMID_IN_REFERENCE.search(citation.reference)
    return PUBMED_URL.format(pmid=match.group(1)) if match else None


def _reference_text(citation: Citation) -> str:
    """The bibliography line without its leading ``[n]``."""
    return re.sub(rf"^\[{citation.n}\]\s*", "", citation.reference).strip() or citation.source_id


def render_citations(citations: Sequence[Citation]) -> str:
    """The numbered reference list as one HTML block, each record's quotes folded in ``<details>``.

    One line with no blank lines, so Markdown passes it through as a single HTML block.
    """
    if not citations:
        return ""
    items = []
    for citation in sorted(citations, key=lambda c: c.n):
        reference = escape_html(_reference_text(citation))
        url = citation_url(citation)
        label = (
            f'<a href="{html.escape(url, quote=True)}" target="_blank" '
            f'rel="noopener noreferrer">{reference}</a>'
            if url
            else reference
        )
        items.append(
            f'<li value="{citation.n}" class="medgraph-citation" data-source-id="'
            f'{html.escape(citation.source_id, quote=True)}">{label}{_quote_block(citation)}</li>'
        )
    return f'<ol class="medgraph-citations">{"".join(items)}</ol>'


def _quote_block(citation: Citation) -> str:
    """Every cited passage of the record folded in one ``<details>``, or "" when none has text."""
    quotes = [p.quote for p in citation.cited_passages() if p.quote.strip()]
    if not quotes:
        return ""
    summary = "Quoted passage" if len(quotes) == 1 else f"Quoted passages ({len(quotes)})"
    blocks = "".join(f"<blockquote>{escape_html(quote)}</blockquote>" for quote in quotes)
    return f'<details class="medgraph-quote"><summary>{summary}</summary>{blocks}</details>'


def render_answer_text(text: str, citations: Sequence[Citation] = ()) -> str:
    """The answer as escaped Markdown; each ``[n]`` marker links to its record (if it has a URL)."""
    urls = {c.n: citation_url(c) for c in citations}
    pieces: list[str] = []
    position = 0
    for marker in _MARKER.finditer(text):
        pieces.append(escape_markdown(text[position : marker.start()]))
        numbers = [n for n in re.split(r"\s*[,–—-]\s*", marker.group(1)) if n]
        links = []
        for number in numbers:
            url = urls.get(int(number))
            label = rf"\[{number}\]"
            links.append(f"[{label}]({url})" if url else label)
        pieces.append("".join(links))
        position = marker.end()
    pieces.append(escape_markdown(text[position:]))
    # Keep paragraph breaks; single newlines inside a paragraph stay as they are.
    return "".join(pieces).strip()


def _percent(fraction: float) -> str:
    return f"{round(100 * fraction)}%"


def render_answer(answer: Answer) -> str:
    """The full answer message: text, image findings, references, verification and the notice."""
    parts = [render_answer_text(answer.text, answer.citations)]
    if answer.findings:
        findings = "\n".join(
            f"- {escape_markdown(f.scope or f.image_id)}: {escape_markdown(f.text)}"
            for f in answer.findings
        )
        parts.append(f"**Image findings**\n\n{findings}")
    if answer.citations:
        parts.append(f"**References**\n\n{render_citations(answer.citations)}")
    checked = answer.verification
    if answer.kind == "answer" and checked.sentences:
        line = (
            f"Verification: {_percent(checked.supported_fraction)} of sentences supported, "
            f"{_percent(checked.relevant_fraction)} on the question"
        )
        if checked.removed:
            line += f"; {len(checked.removed)} unsupported or off-topic sentence(s) removed"
        if checked.scrubbed:
            line += (
                f"; identifiers the answer does not cite removed from {len(checked.scrubbed)} "
                "sentence(s)"
            )
        records = {q.source_id for q in checked.quarantined}
        if records:
            line += f"; {len(records)} record(s) quarantined for instructions"
        parts.append(f"<small>{escape_html(line)} · engine {escape_html(answer.engine)}</small>")
    if answer.notice:
        parts.append(f"<small><em>{escape_html(answer.notice)}</em></small>")
    return "\n\n".join(part for part in parts if part)


def _quoted(text: object) -> str:
    value = " ".join(str(text).split())
    if len(value) > _QUERY_LIMIT:
        value = value[: _QUERY_LIMIT - 1].rstrip() + "…"
    return f"“{value}”"


def progress_label(event: Mapping[str, Any]) -> str:
    """A plain-text line for one custom progress event of the assistant graph."""
    name = str(event.get("event", ""))
    if name == "triage":
        return "Checking the question (safety triage)" + (
            ": emergency signs found" if event.get("emergency") else ""
        )
    if name == "read_image":
        return f"Reading image {event.get('image_id', '')}".strip()
    if name == "retrieve":
        return f"Searching the literature for {_quoted(event.get('query', ''))}"
    if name == "retrieved":
        return f"Found {event.get('hits', 0)} passages"
    if name == "tool":
        args = event.get("args") or {}
        if event.get("name") == "search_literature" and isinstance(args, Mapping):
            return f"Searching the literature (tool) for {_quoted(args.get('query', ''))}"
        return f"Calling tool {event.get('name', '?')}"
    if name == "write":
        return f"Writing the answer ({event.get('sentences', 0)} sentences)"
    if name == "verify":
        fraction = event.get("supported_fraction")
        relevant = event.get("relevant_fraction")
        line = "Verifying the citations"
        if isinstance(fraction, int | float):
            line += f": {_percent(float(fraction))} supported"
            if isinstance(relevant, int | float):
                line += f", {_percent(float(relevant))} on the question"
        if event.get("removed"):
            line += f", {event['removed']} unsupported or off-topic removed"
        return line
    return f"Step: {name or 'working'}"


NODE_LABELS: dict[str, str] = {
    "reason": "Reasoning over the evidence",
    "emergency": "Possible emergency: showing urgent-care guidance",
    "decline": "The question is outside what this assistant answers",
    "finalize": "Finalising the answer",
}
"""Progress lines for graph nodes that emit no custom event of their own."""


def node_labels(update: object) -> list[str]:
    """Progress lines for one ``updates`` stream item (``{node: state update}``)."""
    if not isinstance(update, Mapping):
        return []
    return [NODE_LABELS[node] for node in update if node in NODE_LABELS]


def render_progress(lines: Sequence[str]) -> str:
    """The progress lines as an escaped Markdown bullet list."""
    return "\n".join(f"- {escape_markdown(line)}" for line in lines)
