"""The research report: its types, and the composition of the branches' sections into one report.

:func:`compose_report` merges the sections (each numbered locally) into one markdown report —
title, summary, one section per sub-question, limitations and a "Bibliography" of the cited
records only, renumbered globally in order of first citation. :func:`cancelled_report` is the
report of a run cancelled at plan approval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from medgraph.agents.extractive import EXTRACTIVE_LABEL, section_kind
from medgraph.graphs.config import ResearchSettings
from medgraph.graphs.research_plan import SubQuestion
from medgraph.graphs.safety import NOT_FOR_CLINICAL_USE
from medgraph.knowledge.chunking import split_sentences
from medgraph.knowledge.citations import (
    OFF_TOPIC_FLAG,
    UNSUPPORTED_FLAG,
    Citation,
    DraftSentence,
    Verification,
    evidence_by_number,
    render_answer,
    resolve_citations,
    split_flags,
)
from medgraph.knowledge.conflicts import Conflict, Statement, find_conflicts
from medgraph.knowledge.types import Document, Evidence

__all__ = [
    "NOT_RESEARCHED_SECTION",
    "NO_EVIDENCE_SECTION",
    "RULE_CONFLICT_CHECK",
    "UNSUPPORTED_SECTION",
    "BibliographyEntry",
    "ConflictFinder",
    "Report",
    "ReportConflict",
    "ReportSection",
    "ReportStatus",
    "ReportVerification",
    "SectionResult",
    "SectionStatus",
    "bibliography_line",
    "cancelled_report",
    "compose_report",
    "conflict_statements",
]

NO_EVIDENCE_SECTION = (
    "No passage in the literature index addresses this sub-question; it is left unanswered."
)
UNSUPPORTED_SECTION = (
    "Passages were retrieved, but no sentence about this sub-question could be supported by them; "
    "it is left unanswered."
)
NOT_RESEARCHED_SECTION = (
    "Not researched: the language-model call budget was used up before this sub-question."
)
RULE_CONFLICT_CHECK = (
    "by rules on the cited findings and conclusions: increased/decreased, associated/not "
    "associated, superior/not superior on the same outcome"
)
"""How the extractive engine checks for conflicts, as the Limitations say it."""

ConflictFinder = Callable[[Sequence[Statement]], list[Conflict]]
"""Finds the conflicts among findings of different records (rules, or the model as judge)."""


SectionStatus = Literal["answered", "no_evidence", "unsupported", "not_researched"]


class SectionResult(BaseModel):
    """What one branch found, numbered locally (its evidence numbers start at 1)."""

    index: int
    question: str
    why: str = ""
    status: SectionStatus
    sentences: list[DraftSentence] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    verification: Verification = Field(default_factory=Verification)
    notes: list[str] = Field(default_factory=list)
    model_calls: int = 0
    evidence_capped: bool = False
    """More passages matched than ``evidence_per_subquestion`` allowed to read."""


class ReportSection(BaseModel):
    """One sub-question's section of the report, with citations in the report's numbering."""

    question: str
    why: str = ""
    status: SectionStatus
    text: str
    citations: list[Citation] = Field(default_factory=list)
    verification: Verification = Field(default_factory=Verification)


class BibliographyEntry(BaseModel):
    """One cited record: ``text`` is the rendered ``[n] ...`` line."""

    n: int
    source_id: str
    title: str | None = None
    year: int | None = None
    journal: str | None = None
    pmid: str | None = None
    doi: str | None = None
    url: str | None = None
    text: str


class ReportVerification(BaseModel):
    """Verification over the whole report."""

    claims: int = 0
    supported: int = 0
    supported_fraction: float = 1.0
    relevant: int = 0
    relevant_fraction: float = 1.0
    removed: int = 0
    marked: int = 0


class ReportConflict(BaseModel):
    """Two cited records reporting opposite findings on one outcome (numbers as in the report)."""

    first: int
    second: int
    first_text: str
    second_text: str
    outcome: str = ""


ReportStatus = Literal["done", "awaiting_approval", "cancelled"]


class Report(BaseModel):
    """A research report: markdown text and its parts."""

    topic: str
    title: str
    markdown: str
    status: ReportStatus = "done"
    summary: list[str] = Field(default_factory=list)
    sections: list[ReportSection] = Field(default_factory=list)
    bibliography: list[BibliographyEntry] = Field(default_factory=list)
    verification: ReportVerification = Field(default_factory=ReportVerification)
    plan: list[SubQuestion] = Field(default_factory=list)
    limitations: list[str] = Field(default_factory=list)
    conflicts: list[ReportConflict] = Field(default_factory=list)
    budget_notes: list[str] = Field(default_factory=list)
    model_calls: int = 0
    engine: str
    notice: str = NOT_FOR_CLINICAL_USE
    thread_id: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The ``medgraph research --json`` shape."""
        return self.model_dump(mode="json")


def bibliography_line(document: Document, number: int) -> str:
    """``[n] Author et al. Title. Journal Year. PMID: <id>. <link>`` from the fields that exist."""
    parts = document.reference_parts()
    if document.pmid:
        parts.append(f"PMID: {document.pmid}.")
    elif document.doi:
        parts.append(f"DOI: {document.doi}.")
    else:
        parts.append(f"{document.source_id}.")
    if document.link:
        parts.append(document.link)
    return f"[{number}] " + " ".join(parts)


def _sources(section: SectionResult) -> list[tuple[DraftSentence, list[str]]]:
    """Each kept sentence with the record ids it cites (local numbers resolved)."""
    known = evidence_by_number(section.evidence)
    return [
        (s, list(dict.fromkeys(known[n].source_id for n in s.citations if n in known)))
        for s in section.sentences
    ]


def _summary_sentence(keyed: list[tuple[DraftSentence, list[str]]]) -> int | None:
    """Index of the first cited sentence not flagged unsupported or off-topic."""
    for index, (sentence, sources) in enumerate(keyed):
        if sources and not split_flags(sentence.text)[1]:
            return index
    return None


def conflict_statements(
    sections: Sequence[SectionResult], numbers: dict[str, int]
) -> list[Statement]:
    """The findings to compare: each section's kept, unflagged sentences, and the sentences of
    the CONCLUSIONS sections of the records they cite, numbered as in the report."""
    statements: dict[tuple[str, str], Statement] = {}
    for section in sections:
        known = evidence_by_number(section.evidence)
        cited: set[str] = set()
        for sentence in section.sentences:
            text, flags = split_flags(sentence.text)
            sources = [known[n].source_id for n in sentence.citations if n in known]
            cited.update(sources)
            if sources and not flags and sources[0] in numbers:
                statements.setdefault(
                    (sources[0], text), Statement(text, sources[0], numbers[sources[0]])
                )
        for item in section.evidence:
            if item.source_id not in cited or item.source_id not in numbers:
                continue
            if section_kind(item.chunk.section) != "conclusion":
                continue
            for start, end in split_sentences(item.chunk.text):
                text = item.chunk.text[start:end]
                statements.setdefault(
                    (item.source_id, text),
                    Statement(text, item.source_id, numbers[item.source_id]),
                )
    return list(statements.values())


def _conflict_line(conflict: ReportConflict) -> str:
    on = f" on {conflict.outcome}" if conflict.outcome else ""
    return (
        f'Conflicting evidence{on}: [{conflict.first}] reports "{conflict.first_text}", while '
        f'[{conflict.second}] reports "{conflict.second_text}". Compare the two records before '
        "drawing conclusions."
    )


def _global(sentence: DraftSentence, sources: list[str], numbers: dict[str, int]) -> DraftSentence:
    return sentence.model_copy(update={"citations": [numbers[s] for s in sources]})


def _percent(fraction: float) -> str:
    return f"{fraction:.0%}"


def compose_report(
    *,
    topic: str,
    title: str,
    plan: Sequence[SubQuestion],
    sections: Sequence[SectionResult],
    notes: Sequence[str],
    budgets: ResearchSettings,
    plan_calls: int,
    plan_source: str,
    engine: str,
    extractive: bool,
    min_supported_fraction: float,
    find: ConflictFinder = find_conflicts,
    conflict_check: str = RULE_CONFLICT_CHECK,
) -> Report:
    """Merge the branches into one report with one citation numbering, in reading order.

    ``find`` lists the conflicts between the cited records' findings
    (:func:`conflict_statements`); each goes under Limitations with both citations, and
    ``conflict_check`` says how they were looked for when none is found.
    """
    ordered = sorted(sections, key=lambda s: s.index)
    keyed = [_sources(s) for s in ordered]
    documents = {e.source_id: e.document for s in ordered for e in s.evidence}

    summary_picks = [(k, _summary_sentence(keyed[k])) for k in range(len(ordered))]
    summary_keyed = [keyed[k][i] for k, i in summary_picks if i is not None]
    numbers: dict[str, int] = {}
    for block in [summary_keyed, *keyed]:
        for _, sources in block:
            for source in sources:
                numbers.setdefault(source, len(numbers) + 1)

    bibliography = [
        BibliographyEntry(
            n=n,
            source_id=source,
            title=documents[source].title,
            year=documents[source].year,
            journal=documents[source].journal,
            pmid=documents[source].pmid,
            doi=documents[source].doi,
            url=documents[source].link,
            text=bibliography_line(documents[source], n),
        )
        for source, n in numbers.items()
    ]
    line_of = {entry.source_id: entry.text for entry in bibliography}
    summary = [render_answer([_global(s, src, numbers)]) for s, src in summary_keyed]

    report_sections: list[ReportSection] = []
    limitations: list[str] = []
    budget_notes = list(notes)
    claims = supported = relevant = removed = marked = 0
    capped = [k + 1 for k, s in enumerate(ordered) if s.evidence_capped]
    for k, (section, pairs) in enumerate(zip(ordered, keyed, strict=True), start=1):
        known = evidence_by_number(section.evidence)
        local_to_global = {
            n: numbers[e.source_id] for n, e in known.items() if e.source_id in numbers
        }
        citations = [
            c.model_copy(update={"n": numbers[c.source_id], "reference": line_of[c.source_id]})
            for c in resolve_citations(section.sentences, section.evidence)
            if c.source_id in numbers
        ]
        checks = [
            c.model_copy(
                update={
                    "citations": list(
                        dict.fromkeys(
                            local_to_global[n] for n in c.citations if n in local_to_global
                        )
                    )
                }
            )
            for c in section.verification.sentences
        ]
        verification = section.verification.model_copy(update={"sentences": checks})
        claim_checks = [c for c in checks if c.method != "no-claim"]
        claims += len(claim_checks)
        supported += sum(c.supported for c in claim_checks)
        relevant += sum(c.relevant for c in claim_checks)
        removed += len(section.verification.removed)
        text = {
            "answered": render_answer([_global(s, src, numbers) for s, src in pairs]),
            "no_evidence": NO_EVIDENCE_SECTION,
            "unsupported": UNSUPPORTED_SECTION,
            "not_researched": NOT_RESEARCHED_SECTION,
        }[section.status]
        report_sections.append(
            ReportSection(
                question=section.question,
                why=section.why,
                status=section.status,
                text=text,
                citations=citations,
                verification=verification,
            )
        )
        label = f'Sub-question {k} ("{section.question}")'
        if section.status == "no_evidence":
            limitations.append(f"{label}: no indexed evidence was found; it is not answered.")
        elif section.status == "unsupported":
            limitations.append(
                f"{label}: no sentence could be supported by the retrieved passages; it is not "
                "answered."
            )
        elif section.status == "not_researched":
            budget_notes.append(
                f"Model-call budget: {label} was not researched; the budget of "
                f"{budgets.max_model_calls} calls was spent."
            )
        else:
            records = {source for _, sources in pairs for source in sources}
            if len(records) == 1:
                limitations.append(f"{label}: thin evidence — a single record supports it.")
            if claim_checks and verification.supported_fraction < min_supported_fraction:
                limitations.append(
                    f"{label}: weak support — only {_percent(verification.supported_fraction)} "
                    "of its claims are supported by the passages they cite."
                )
        if section.verification.removed:
            supported_of = {c.sentence: c.supported for c in section.verification.sentences}
            removed_sentences = [split_flags(t)[0] for t in section.verification.removed]
            unsupported = sum(not supported_of.get(t, False) for t in removed_sentences)
            for count, kind in (
                (unsupported, "unsupported"),
                (len(removed_sentences) - unsupported, "off-topic"),
            ):
                if count:
                    limitations.append(
                        f"{label}: {count} {kind} sentence{'s' if count > 1 else ''} removed."
                    )
        flags = [split_flags(s.text)[1] for s in section.sentences]
        marked += sum(bool(f) for f in flags)
        for flag in (UNSUPPORTED_FLAG, OFF_TOPIC_FLAG):
            flagged = sum(flag in f for f in flags)
            if not flagged:
                continue
            them, it_is = ("them", "they are") if flagged > 1 else ("it", "it is")
            why = (
                f"the cited passages do not support {them}"
                if flag == UNSUPPORTED_FLAG
                else f"{it_is} not about the sub-question"
            )
            limitations.append(
                f"{label}: {flagged} sentence{'s' if flagged > 1 else ''} kept but marked "
                f"{flag}: {why}."
            )
        for note in section.notes:
            target = budget_notes if "budget" in note else limitations
            target.append(f"{label}: {note}.")
    if capped:
        listed = ", ".join(str(k) for k in capped)
        budget_notes.append(
            f"Evidence budget: at most {budgets.evidence_per_subquestion} passages were read per "
            f"sub-question; more matched for sub-question{'s' if len(capped) > 1 else ''} "
            f"{listed}."
        )
    used = plan_calls + sum(s.model_calls for s in ordered)
    conflicts = [
        ReportConflict(
            first=c.first.number,
            second=c.second.number,
            first_text=c.first.text,
            second_text=c.second.text,
            outcome=c.outcome,
        )
        for c in find(conflict_statements(ordered, numbers))
    ]
    limitations += [_conflict_line(conflict) for conflict in conflicts]
    if len(numbers) > 1 and not conflicts:
        limitations.append(
            f"No conflicting findings were found between the cited records (checked "
            f"{conflict_check}); absence of a detected conflict is not agreement."
        )
    if extractive:
        limitations.append(
            "Extractive engine: sections quote sentences from the sources; nothing is "
            "paraphrased or synthesised."
        )
    if plan_source == "rules":
        limitations.append(
            "The plan was made by rules (the topic's noun phrases), not by a language model."
        )
    report_verification = ReportVerification(
        claims=claims, supported=supported, relevant=relevant, removed=removed, marked=marked,
        supported_fraction=supported / claims if claims else 1.0,
        relevant_fraction=relevant / claims if claims else 1.0,
    )  # fmt: skip
    markdown = _markdown(
        title=title,
        summary=summary,
        sections=report_sections,
        limitations=[*budget_notes, *limitations],
        bibliography=bibliography,
        verification=report_verification,
        extractive=extractive,
    )
    return Report(
        topic=topic,
        title=title,
        markdown=markdown,
        summary=summary,
        sections=report_sections,
        bibliography=bibliography,
        verification=report_verification,
        plan=list(plan),
        limitations=[*budget_notes, *limitations],
        conflicts=conflicts,
        budget_notes=budget_notes,
        model_calls=used,
        engine=engine,
    )


def _markdown(
    *,
    title: str,
    summary: Sequence[str],
    sections: Sequence[ReportSection],
    limitations: Sequence[str],
    bibliography: Sequence[BibliographyEntry],
    verification: ReportVerification,
    extractive: bool,
) -> str:
    lines = [f"# {title}", ""]
    if extractive:
        lines += [f"*{EXTRACTIVE_LABEL}*", ""]
    lines += [f"> **Not for clinical use.** {NOT_FOR_CLINICAL_USE}", "", "## Summary", ""]
    lines += [f"- {sentence}" for sentence in summary]
    answered = sum(s.status == "answered" for s in sections)
    if summary:
        lines.append("")
    lines.append(
        f"Cited evidence was found for {answered} of {len(sections)} sub-questions; "
        f"{verification.supported} of {verification.claims} checked claims "
        f"({_percent(verification.supported_fraction)}) are supported by the passages they cite, "
        f"{verification.relevant} ({_percent(verification.relevant_fraction)}) are about their "
        "sub-question."
    )
    for number, section in enumerate(sections, start=1):
        lines += ["", f"## {number}. {section.question}", ""]
        if section.why:
            lines += [f"*Why it matters: {section.why}*", ""]
        lines.append(section.text)
        checks = [c for c in section.verification.sentences if c.method != "no-claim"]
        if section.status == "answered":
            supported = sum(c.supported for c in checks)
            relevant = sum(c.relevant for c in checks)
            lines += [
                "",
                f"*Verification: {supported} of {len(checks)} claims supported by the cited "
                f"passages; {relevant} of {len(checks)} about the sub-question.*",
            ]
    lines += ["", "## Limitations", ""]
    lines += [f"- {item}" for item in limitations] or ["- None noted."]
    lines += ["", "## Bibliography", ""]
    if bibliography:
        for entry in bibliography:
            lines += [entry.text, ""]
    else:
        lines += ["No records were cited.", ""]
    return "\n".join(lines).rstrip() + "\n"


def cancelled_report(topic: str, title: str, plan: Sequence[SubQuestion], engine: str) -> Report:
    """The report of a run cancelled at plan approval: the plan, no research."""
    items = [f"{n}. {s.question}" for n, s in enumerate(plan, start=1)]
    markdown = "\n".join(
        [f"# {title}", "", "Research cancelled at plan approval; no evidence was gathered.", ""]
        + (["Plan:", "", *items, ""] if items else [])
        + [f"> **Not for clinical use.** {NOT_FOR_CLINICAL_USE}", ""]
    )
    return Report(
        topic=topic, title=title, markdown=markdown, status="cancelled", plan=list(plan),
        engine=engine,
    )  # fmt: skip
