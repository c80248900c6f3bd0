"""Typed state of the assistant graph, and the answer it returns.

State holds only serialisable values: messages, image references (ids, content hashes and
non-identifying metadata — never file paths, file names or PIL objects), findings, evidence, the
draft, the final answer, the route taken and step counters.
Evidence merges by chunk id and keeps first-come citation numbers, so parallel branches and later
retrieval rounds never renumber what an earlier step already cited.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from medgraph.knowledge.citations import Citation, DraftSentence, Verification
from medgraph.knowledge.types import Evidence


class ImageRef(BaseModel):
    """An attached image or DICOM series: the id the model may name and what may be said about it.

    No file path or file name is kept (either may carry a patient's name): the decoded pixels
    live in the run's :class:`~medgraph.graphs.attachments.Attachments`, found by ``sha256``.
    Every field here is non-identifying: modality, body part, view, orientation, slice count,
    spacing, and study labels that give only the relative order of studies.
    """

    image_id: str
    """``img-N`` for a 2D image, ``series-N`` for a volume series."""
    sha256: str
    kind: Literal["image", "series"] = "image"
    description: str = ""
    """Non-identifying description (modality, body part, view; slices and spacing), or ""."""
    study_id: str | None = None
    """``study-N`` when the image came from a DICOM study."""
    role: Literal["prior", "current"] | None = None
    """Set when two studies of one patient and modality are compared (by study date order)."""
    slice_count: int = 0
    """Slices in the ordered series (series only)."""
    slice_numbers: list[int] = Field(default_factory=list)
    """Series slice numbers (1-based) of the slices shown to the model, in order."""
    positions_mm: list[float] | None = None
    """Distance of each shown slice from the first slice along the slice normal."""
    spacing_mm: float | None = None
    warnings: list[str] = Field(default_factory=list)
    """Geometry warnings (missing or duplicate slices), naming slices by number only."""


class Finding(BaseModel):
    """What the image reader saw in one image, series, set of views or comparison."""

    image_id: str
    """The id read (``img-1``, ``series-1``), or ids joined by ``+`` for views and comparisons."""
    text: str
    model: str
    kind: Literal["image", "series", "views", "comparison"] = "image"
    scope: str = ""
    """Where the finding came from, e.g. ``series-1 (CT chest axial), slices 1-120 of 120``."""


class ToolUse(BaseModel):
    """One tool call the reasoner made while answering, with the result it got."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    result: str = ""
    status: Literal["success", "error"] = "success"


class Answer(BaseModel):
    """The assistant's reply: cited text, its citations and how it was produced."""

    question: str
    text: str
    citations: list[Citation] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    tool_calls: list[ToolUse] = Field(default_factory=list)
    """This turn's tool calls and their results (the reasoner's trace)."""
    route: list[str] = Field(default_factory=list)
    verification: Verification = Field(default_factory=Verification)
    engine: str
    notice: str
    retrieved: list[str] = Field(default_factory=list)
    """Source ids (PMID/DOI/path) of every record retrieved in this turn: citations name only
    these."""
    limits: list[str] = Field(default_factory=list)
    """What a budget cut short in this turn (the time limit, a token budget), in plain words."""
    kind: Literal["answer", "emergency", "out_of_scope", "no_evidence", "clarify"] = "answer"
    """``clarify``: ``text`` is a clarifying question; reply in the same thread to continue."""
    thread_id: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The ``medgraph ask --json`` shape.

        One citation per cited record; ``quote``/``span`` are its first cited passage and
        ``passages`` lists every cited passage (``chunk_id``, ``quote``, ``span``).
        """
        return {
            "answer": self.text,
            "citations": [
                {
                    "n": c.n,
                    "source_id": c.source_id,
                    "title": c.title,
                    "year": c.year,
                    "journal": c.journal,
                    "url": c.url,
                    "quote": c.quote,
                    "span": [c.start, c.end],
                    "passages": [
                        {
                            "chunk_id": p.chunk_id,
                            "quote": p.quote,
                            "span": [p.start, p.end],
                        }
                        for p in c.cited_passages()
                    ],
                }
                for c in self.citations
            ],
            "findings": [f.model_dump() for f in self.findings],
            "tool_calls": [t.model_dump() for t in self.tool_calls],
            "route": self.route,
            "verification": self.verification.model_dump(),
            "engine": self.engine,
            "kind": self.kind,
            "retrieved": self.retrieved,
            "limits": self.limits,
            "notice": self.notice,
            "thread_id": self.thread_id,
        }


class Reset(list):  # type: ignore[type-arg]
    """An update that replaces an accumulated list instead of extending it (a new question)."""


def append_or_reset(existing: list[Any], new: list[Any]) -> list[Any]:
    """List reducer: extend, or start over when the update is a :class:`Reset`."""
    if isinstance(new, Reset):
        return list(new)
    return [*(existing or []), *(new or [])]


class BestDraft(BaseModel):
    """The best verified draft so far (kept when a budget ends the verify rounds)."""

    sentences: list[DraftSentence] = Field(default_factory=list)
    verification: Verification = Field(default_factory=Verification)


def merge_evidence(existing: list[Evidence], new: list[Evidence]) -> list[Evidence]:
    """Append evidence not yet present (by chunk id), numbering it after what is there.

    A :class:`Reset` update starts a fresh list (numbering from 1).
    """
    merged = [] if isinstance(new, Reset) else list(existing or [])
    seen = {e.chunk.chunk_id for e in merged}
    for item in new or []:
        if item.chunk.chunk_id in seen:
            continue
        seen.add(item.chunk.chunk_id)
        merged.append(item.with_number(len(merged) + 1))
    return merged


class AssistantState(TypedDict, total=False):
    """Everything the assistant graph reads and writes."""

    messages: Annotated[list[AnyMessage], add_messages]
    question: str
    images: list[ImageRef]
    findings: Annotated[list[Finding], append_or_reset]
    evidence: Annotated[list[Evidence], merge_evidence]
    route: Annotated[list[str], append_or_reset]
    needs_images: bool
    needs_literature: bool
    emergency: bool
    emergency_kind: str | None
    out_of_scope: bool
    query: str
    clarifying_question: str | None
    """Set by triage when the question is too ambiguous to answer; the clarify node asks it."""
    draft: list[DraftSentence]
    best: BestDraft | None
    retry: bool
    answer: Answer
    tool_steps: int
    verify_rounds: int
    deadline: float | None
    """``time.time()`` by which this turn must end (``GraphSettings.max_turn_seconds``)."""
    write_seconds: float | None
    """How long the model writer took for this turn's first draft (verify weighs a rewrite
    round against the time left)."""
    limits: Annotated[list[str], append_or_reset]
    """What budgets cut short in this turn (goes into ``Answer.limits``)."""
