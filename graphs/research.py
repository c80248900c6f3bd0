"""The research graph: a plan of sub-questions, one cited branch per sub-question, one report.

::

    START -> plan --(approve_plan)--> approve (interrupt) --(cancel)--> report -> END
                 |                           |
                 |                      (accept / edit)
                 +---------------------------+--> Send x N: research_subquestion -> report -> END

- **plan**: a list of sub-questions, each with why it matters. The user's own bullet list when the
  topic has one; else structured output from the text model; with the extractive engine, rules
  (the topic's noun phrases paired with its subject), deterministic.
- **approve** (only with ``approve_plan``): ``langgraph.types.interrupt`` with the plan; resume
  with ``Command(resume=...)``: ``"accept"``, an edited list of sub-questions, or ``"cancel"``.
- **research_subquestion** (one branch per sub-question, fanned out with ``Send``): the
  assistant's own ``retrieve``, ``write`` and ``verify`` nodes
  (:func:`medgraph.graphs.assistant.build_nodes`) run on a per-branch sub-state, so the
  citation guarantees are the assistant's: markers name retrieved evidence, every claim is
  checked, unsupported sentences are removed or marked.
- **report**: one markdown report — title, summary, one section per sub-question, limitations and
  a "Bibliography" of the cited records only, renumbered globally in order of first citation.

Budgets (:class:`~medgraph.graphs.config.ResearchSettings`): sub-questions, passages per
sub-question, sentences per section and language-model calls in total; the report's Limitations
say where a budget cut the work short.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin, get_type_hints
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.tracers.context import register_configure_hook
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send, interrupt
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from medgraph.agents.extractive import EXTRACTIVE_LABEL
from medgraph.errors import MedgraphError
from medgraph.graphs.assistant import (
    AssistantParts,
    _emit,
    build_nodes,
    parts_from_settings,
)
from medgraph.graphs.config import ResearchSettings
from medgraph.graphs.safety import NOT_FOR_CLINICAL_USE, emergency_answer, triage_by_rules
from medgraph.graphs.state import AssistantState, BestDraft, Reset, append_or_reset
from medgraph.knowledge.citations import (
    STOPWORDS,
    UNSUPPORTED_FLAG,
    Citation,
    DraftSentence,
    Verification,
    content_terms,
    evidence_by_number,
    render_answer,
    resolve_citations,
    stem,
)
from medgraph.knowledge.types import Document, Evidence
from medgraph.knowledge.verification import is_claim
from medgraph.tools.literature import EvidenceSearcher

if TYPE_CHECKING:
    from medgraph.settings import Settings

__all__ = [
    "RESEARCH_STATE_TYPES",
    "BibliographyEntry",
    "EmptyPlanError",
    "EmptyTopicError",
    "InvalidPlanDecisionError",
    "ModelCallCounter",
    "PlanDecision",
    "Report",
    "ReportSection",
    "ReportVerification",
    "ResearchState",
    "SectionResult",
    "SubQuestion",
    "assemble_research_graph",
    "build_research_graph",
    "build_research_graph_from_parts",
    "make_graph",
    "parse_decision",
    "research_checkpointer",
    "rule_plan",
    "split_bullets",
]

PLAN_SYSTEM = (
    "You plan a review of the biomedical literature. Break the user's research topic into at most "
    "{limit} focused sub-questions, each answerable from journal abstracts, in a sensible reading "
    "order, without overlap. For each, give in one sentence why it matters for the topic. Reply "
    "with JSON only."
)
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
CONFLICT_NOTE = (
    "Findings that differ between sources are not reconciled automatically; compare the cited "
    "passages before drawing conclusions."
)
APPROVAL_QUESTION = "Accept this plan, edit it (send a new list of sub-questions), or cancel?"


# -- errors ----------------------------------------------------------------------------------------


class EmptyTopicError(MedgraphError, ValueError):
    """The research topic is empty or only whitespace."""


class EmptyPlanError(MedgraphError, ValueError):
    """An edited plan holds no sub-questions."""


class InvalidPlanDecisionError(MedgraphError, ValueError):
    """A resume value is neither accept, cancel, nor a list of sub-questions."""


# -- values ----------------------------------------------------------------------------------------


class SubQuestion(BaseModel):
    """One planned sub-question and why it matters for the topic."""

    question: str
    why: str = ""


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
    removed: int = 0
    marked: int = 0


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
    budget_notes: list[str] = Field(default_factory=list)
    model_calls: int = 0
    engine: str
    notice: str = NOT_FOR_CLINICAL_USE
    thread_id: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The ``medgraph research --json`` shape."""
        return self.model_dump(mode="json")


RESEARCH_STATE_TYPES: tuple[type[BaseModel], ...] = (
    SubQuestion,
    SectionResult,
    ReportSection,
    BibliographyEntry,
    ReportVerification,
    Report,
    ResearchSettings,
)
"""The research graph's own state types, for a checkpointer's deserialisation allow-list."""


def research_checkpointer(checkpointer: BaseCheckpointSaver[Any]) -> BaseCheckpointSaver[Any]:
    """``checkpointer`` allowed to revive the research state types (same storage, shared)."""
    return checkpointer.with_allowlist([(t.__module__, t.__name__) for t in RESEARCH_STATE_TYPES])


# -- state -----------------------------------------------------------------------------------------


def merge_sections(existing: list[SectionResult], new: list[SectionResult]) -> list[SectionResult]:
    """Sections by sub-question index (a re-run branch replaces its section); Reset starts over."""
    by_index = {} if isinstance(new, Reset) else {s.index: s for s in existing or []}
    for section in new or []:
        by_index[section.index] = section
    return [by_index[index] for index in sorted(by_index)]


class ResearchState(TypedDict, total=False):
    """Everything the research graph reads and writes."""

    topic: str
    approve_plan: bool
    budgets: ResearchSettings
    """Budgets of this run (input; the graph's settings when absent)."""
    title: str
    plan: list[SubQuestion]
    plan_source: str
    plan_calls: int
    emergency_kind: str | None
    decision: str
    notes: Annotated[list[str], append_or_reset]
    sections: Annotated[list[SectionResult], merge_sections]
    report: Report


class BranchTask(TypedDict):
    """What one ``Send`` gives a branch."""

    index: int
    total: int
    subquestion: SubQuestion
    allowance: int
    budgets: ResearchSettings


# -- planning --------------------------------------------------------------------------------------

_BULLET = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)])\s+(?P<item>\S.*)$")
_PHRASE_BREAK = re.compile(r"[,;:()\[\]?!/]|\s+-\s+|\.(?=\s|$)")
_WORD = re.compile(r"[^\W_][\w'-]*")
# Words that name the kind of question rather than its subject.
_GENERIC_TEXT = """
    effect effects role impact use usage evidence efficacy effectiveness safety association
    associations relationship relation link review overview outcome outcomes management
    treatment treatments study studies research literature risk risks benefit benefits
    current recent new known latest versus vs compared comparison difference differences
    patient patients people person adult adults factor factors value question questions
    issue issues topic topics aspect aspects
"""
_GENERIC = frozenset(_GENERIC_TEXT.split())
_EXTRA_BREAKS = frozenset({"versus", "vs", "compared", "like", "regarding", "concerning"})


def split_bullets(topic: str) -> tuple[str, list[str]]:
    """``(heading, items)`` of a topic written as a bullet or numbered list, else ``(topic, [])``.

    The heading is the text before the first item (trailing ``:`` removed), or the topic's
    first item when nothing precedes the list.
    """
    lines = [line for line in topic.strip().splitlines() if line.strip()]
    items, heading = [], []
    for line in lines:
        match = _BULLET.match(line)
        if match:
            items.append(match.group("item").strip())
        elif not items:
            heading.append(line.strip())
    if len(items) < 1 or (not heading and len(items) < 2):
        return topic.strip(), []
    title = " ".join(heading).rstrip(":").strip() or items[0]
    return title, items


def noun_phrases(topic: str) -> list[str]:
    """Runs of content words in ``topic``, split at punctuation and function words, in order.

    Generic words ("effect", "role", "risk") do not start a phrase, a phrase of generic words only
    is dropped, and so are repeats.
    """
    phrases: list[str] = []
    for piece in _PHRASE_BREAK.split(topic):
        run: list[str] = []
        for word in [*_WORD.findall(piece), ""]:
            lower = word.lower()
            if word and lower not in STOPWORDS and lower not in _EXTRA_BREAKS:
                run.append(word)
                continue
            while run and run[0].lower() in _GENERIC:
                run.pop(0)
            if run and not all(word.lower() in _GENERIC for word in run):
                phrases.append(" ".join(run))
            run = []
    seen: set[str] = set()
    unique = []
    for phrase in phrases:
        if phrase.lower() not in seen:
            seen.add(phrase.lower())
            unique.append(phrase)
    return unique


def _lower_initial(phrase: str, topic: str) -> str:
    """Lower-case a sentence-initial capital ("Metformin" -> "metformin"), never an acronym."""
    first = phrase.split()[0]
    if topic.lstrip().startswith(first) and first[:1].isupper() and first[1:].islower():
        return first.lower() + phrase[len(first) :]
    return phrase


def rule_plan(topic: str) -> list[SubQuestion]:
    """The plan of the extractive engine: the topic's subject paired with each other noun phrase.

    ``"Metformin and lactic acidosis in chronic kidney disease"`` gives "What is known about
    metformin and lactic acidosis?" and "... metformin and chronic kidney disease?". A topic with
    one noun phrase gives one sub-question about it; one with none, the topic itself.
    """
    phrases = [_lower_initial(p, topic) for p in noun_phrases(topic)]
    if not phrases:
        text = topic.strip().rstrip("?.")
        return [SubQuestion(question=f"What is known about {text}?", why="The topic as asked.")]
    subject, others = phrases[0], phrases[1:]
    if not others:
        return [
            SubQuestion(question=f"What is known about {subject}?", why="The topic's only subject.")
        ]
    return [
        SubQuestion(
            question=f"What is known about {subject} and {other}?",
            why=f'Relates the topic\'s subject to "{other}", a key term of the topic.',
        )
        for other in others
    ]


def _plan_schema(limit: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "subquestions": {
                "type": "array",
                "minItems": 1,
                "maxItems": limit,
                "items": {
                    "type": "object",
                    "properties": {
                        "question": {"type": "string", "maxLength": 300},
                        "why": {"type": "string", "maxLength": 300},
                    },
                    "required": ["question", "why"],
                },
            }
        },
        "required": ["subquestions"],
    }


def _as_subquestions(items: Any) -> list[SubQuestion]:
    """Sub-questions from strings or ``{question, why}`` mappings; blank items dropped."""
    if not isinstance(items, list):
        return []
    plan = []
    for item in items:
        if isinstance(item, SubQuestion):
            question, why = item.question, item.why
        elif isinstance(item, str):
            question, why = item, ""
        elif isinstance(item, dict):
            question, why = str(item.get("question") or ""), str(item.get("why") or "")
        else:
            continue
        if question.strip():
            plan.append(SubQuestion(question=question.strip(), why=why.strip()))
    return plan


def model_plan(model: BaseChatModel, topic: str, limit: int) -> list[SubQuestion]:
    """Sub-questions from ``model``'s structured output; ``[]`` when the reply is unusable."""
    import json

    try:
        result = model.with_structured_output(_plan_schema(limit)).invoke(
            [SystemMessage(PLAN_SYSTEM.format(limit=limit)), HumanMessage(topic)]
        )
    except (MedgraphError, ValueError, json.JSONDecodeError):
        return []
    items = result.get("subquestions") if isinstance(result, dict) else result
    return _as_subquestions(items)


def _limit_plan(plan: list[SubQuestion], limit: int) -> tuple[list[SubQuestion], list[str]]:
    if len(plan) <= limit:
        return plan, []
    dropped = "; ".join(f'"{s.question}"' for s in plan[limit:])
    return plan[:limit], [
        f"Sub-question budget: the plan had {len(plan)} sub-questions; only the first {limit} "
        f"were researched (max_subquestions). Not researched: {dropped}."
    ]


class PlanDecision(BaseModel):
    """A normalised answer to the plan-approval interrupt."""

    action: Literal["accept", "edit", "cancel"]
    plan: list[SubQuestion] = Field(default_factory=list)


_ACCEPT_WORDS = {"accept", "a", "approve", "yes", "y", "ok", ""}
_CANCEL_WORDS = {"cancel", "c", "no", "n", "stop"}


def parse_decision(value: Any) -> PlanDecision:
    """Read a resume value: accept (``"accept"``, ``True``, ``None``), cancel (``"cancel"``,
    ``False``), or an edited plan (a list of strings or ``{question, why}`` mappings, or
    ``{"action": "edit", "plan": [...]}``).

    Raises :class:`EmptyPlanError` for an edited plan with no items and
    :class:`InvalidPlanDecisionError` for anything else.
    """
    if isinstance(value, PlanDecision):
        value = value.model_dump()
    if value is None or value is True:
        return PlanDecision(action="accept")
    if value is False:
        return PlanDecision(action="cancel")
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _ACCEPT_WORDS:
            return PlanDecision(action="accept")
        if word in _CANCEL_WORDS:
            return PlanDecision(action="cancel")
    elif isinstance(value, dict) and value.get("action") in ("accept", "cancel"):
        return PlanDecision(action=value["action"])
    elif (isinstance(value, dict) and value.get("action") == "edit") or isinstance(value, list):
        items = value.get("plan") if isinstance(value, dict) else value
        plan = _as_subquestions(items)
        if not plan:
            raise EmptyPlanError(
                "the edited plan has no sub-questions; give at least one sub-question, or cancel"
            )
        return PlanDecision(action="edit", plan=plan)
    raise InvalidPlanDecisionError(
        f"cannot read the plan decision {value!r}; resume with 'accept', 'cancel' or a list of "
        "sub-questions (the edited plan)"
    )


# -- counting model calls --------------------------------------------------------------------------


class ModelCallCounter(BaseCallbackHandler):
    """Counts language-model calls (one per prompt) made while it is active (:func:`counting`)."""

    run_inline = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def _add(self, prompts: int) -> None:
        with self._lock:
            self.count += prompts

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        """One call per message list."""
        self._add(len(messages))

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """One call per prompt."""
        self._add(len(prompts))


_ACTIVE_COUNTER: ContextVar[ModelCallCounter | None] = ContextVar(
    "medgraph_research_model_calls", default=None
)
# Every callback manager configured while a counter is active includes it, so calls made inside
# the reused assistant nodes are counted without changing them.
register_configure_hook(_ACTIVE_COUNTER, inheritable=True)


@contextmanager
def counting(counter: ModelCallCounter) -> Iterator[ModelCallCounter]:
    """Count the model calls made inside this block (this thread and its copied contexts)."""
    token = _ACTIVE_COUNTER.set(counter)
    try:
        yield counter
    finally:
        _ACTIVE_COUNTER.reset(token)


# -- one branch: the assistant's retrieve, write and verify nodes on a sub-state -----------------


def _reducers() -> dict[str, Callable[[Any, Any], Any]]:
    """The reducers declared on :class:`AssistantState` (``Annotated[..., reducer]``)."""
    found = {}
    for name, hint in get_type_hints(AssistantState, include_extras=True).items():
        if get_origin(hint) is Annotated:
            found[name] = get_args(hint)[1]
    return found


_ASSISTANT_REDUCERS = _reducers()


def _apply(state: dict[str, Any], update: dict[str, Any]) -> None:
    """Apply one node's update to a branch's sub-state as the assistant graph would."""
    for key, value in update.items():
        reducer = _ASSISTANT_REDUCERS.get(key)
        state[key] = reducer(state.get(key) or [], value) if reducer else value


def _substate(question: str) -> dict[str, Any]:
    """A fresh assistant sub-state for one sub-question (literature route, no images)."""
    return {
        "messages": [HumanMessage(question)],
        "question": question,
        "query": question,
        "images": [],
        "findings": [],
        "evidence": [],
        "route": [],
        "needs_images": False,
        "needs_literature": True,
        "emergency": False,
        "out_of_scope": False,
        "draft": [],
        "best": None,
        "retry": False,
        "tool_steps": 0,
        "verify_rounds": 0,
    }


def _judge_calls(draft: Sequence[DraftSentence]) -> int:
    """Judge calls ``verify`` will make for ``draft``: one per cited claim."""
    return sum(1 for s in draft if s.citations and is_claim(s.text))


_FRAMING = frozenset(
    stem(word)
    for word in (*_GENERIC, "what", "known", "know", "report", "reported", "show", "shown")
)


def subject_terms(question: str) -> set[str]:
    """The stemmed content words of ``question`` that name its subject (framing words left out)."""
    return content_terms(question) - _FRAMING


def on_subject(evidence: Evidence, terms: set[str]) -> bool:
    """Whether the passage shares a subject word with the sub-question (always, if it has none).

    Dense retrieval returns nearest neighbours even for a question the index cannot answer; a
    passage that shares no word with the question's subject is set aside, so such a sub-question
    is reported as having no evidence instead of being filled with unrelated quotes.
    """
    return not terms or bool(terms & content_terms(evidence.chunk.text))


def _retrieve(
    nodes: dict[str, Callable[..., Any]], sub: dict[str, Any], cap: int
) -> tuple[int, int]:
    """Run ``retrieve``; keep on-subject passages, at most ``cap`` in all.

    Returns how many on-subject passages the search found and how many it set aside.
    """
    update = nodes["retrieve"](sub)
    terms = subject_terms(sub["question"])
    hits = update.get("evidence", [])
    kept = [item for item in hits if on_subject(item, terms)]
    _apply(sub, {**update, "evidence": kept})
    sub["evidence"] = sub["evidence"][:cap]  # numbering is first-come, so the tail goes
    return len(kept), len(hits) - len(kept)


def research_branch(parts: AssistantParts, task: BranchTask) -> SectionResult:
    """Research one sub-question with the assistant's nodes, within the branch's budgets."""
    budgets, sub_question = task["budgets"], task["subquestion"]
    cap = budgets.evidence_per_subquestion
    graph_settings = parts.settings.model_copy(
        update={"retrieve_k": cap + 1, "max_answer_sentences": budgets.sentences_per_section}
    )
    branch_parts = replace(parts, settings=graph_settings)
    nodes = build_nodes(branch_parts)
    # Same nodes without a model: verify then scores support lexically instead of by judge calls.
    lexical = nodes if parts.extractive else build_nodes(replace(branch_parts, text_model=None))
    result = SectionResult(
        index=task["index"], question=sub_question.question, why=sub_question.why, status="answered"
    )
    allowance = task["allowance"]
    if not parts.extractive and allowance < 1:
        return result.model_copy(update={"status": "not_researched"})
    notes: list[str] = []
    counter = ModelCallCounter()
    sub = _substate(sub_question.question)
    with counting(counter):
        found, aside = _retrieve(nodes, sub, cap)
        capped = found > cap
        if aside:
            notes.append(
                f"{aside} retrieved passage{'s' if aside > 1 else ''} shared no subject word with "
                "the sub-question and were set aside"
            )
        if not sub["evidence"]:
            return result.model_copy(update={"status": "no_evidence", "notes": notes})
        while True:
            _apply(sub, nodes["write"](sub))
            verifier = nodes
            if not parts.extractive and allowance - counter.count < _judge_calls(sub["draft"]):
                verifier = lexical
                notes.append(
                    "claims were checked lexically, not by the model: the model-call budget ran "
                    "short"
                )
            _apply(sub, verifier["verify"](sub))
            if not sub.get("retry"):
                break
            if not parts.extractive and allowance - counter.count < 1:
                notes.append(
                    "support was low, but the model-call budget left no further retrieval round"
                )
                break
            before = len(sub["evidence"])
            _retrieve(nodes, sub, cap)
            if len(sub["evidence"]) == before:
                notes.append(
                    "support was low, but the evidence budget left no room for more passages"
                )
                break
    best: BestDraft = sub.get("best") or BestDraft()
    return result.model_copy(
        update={
            "status": "answered" if best.sentences else "unsupported",
            "sentences": best.sentences,
            "evidence": sub["evidence"],
            "verification": best.verification,
            "notes": list(dict.fromkeys(notes)),
            "model_calls": counter.count,
            "evidence_capped": capped,
        }
    )


# -- the report ------------------------------------------------------------------------------------


def bibliography_line(document: Document, number: int) -> str:
    """``[n] Author et al. Title. Journal Year. PMID: <id>. <link>`` from the fields that exist."""
    parts: list[str] = []
    if document.authors:
        first = document.authors[0]
        parts.append(f"{first} et al." if len(document.authors) > 1 else f"{first}.")
    if document.title:
        title = document.title.rstrip()
        parts.append(title if title.endswith((".", "?", "!")) else f"{title}.")
    venue = " ".join(p for p in (document.journal, str(document.year or "") or None) if p)
    if venue:
        parts.append(f"{venue}.")
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
    """Index of the first cited sentence not flagged unsupported."""
    for index, (sentence, sources) in enumerate(keyed):
        if sources and not sentence.text.endswith(UNSUPPORTED_FLAG):
            return index
    return None


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
) -> Report:
    """Merge the branches into one report with one citation numbering, in reading order."""
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
    claims = supported = removed = marked = 0
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
            count = len(section.verification.removed)
            limitations.append(
                f"{label}: {count} unsupported sentence{'s' if count > 1 else ''} removed."
            )
        flagged = sum(s.text.endswith(UNSUPPORTED_FLAG) for s in section.sentences)
        marked += flagged
        if flagged:
            them = "them" if flagged > 1 else "it"
            limitations.append(
                f"{label}: {flagged} sentence{'s' if flagged > 1 else ''} kept but marked "
                f"{UNSUPPORTED_FLAG}: the cited passages do not support {them}."
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
    if numbers:
        limitations.append(CONFLICT_NOTE)
    if extractive:
        limitations.append(
            "Extractive engine: sections quote sentences from the sources; nothing is "
            "paraphrased or synthesised."
        )
    if plan_source == "rules":
        limitations.append(
            "The plan was made by rules (the topic's noun phrases), not by a language model."
        )
    fraction = supported / claims if claims else 1.0
    report_verification = ReportVerification(
        claims=claims, supported=supported, supported_fraction=fraction, removed=removed,
        marked=marked,
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
        f"({_percent(verification.supported_fraction)}) are supported by the passages they cite."
    )
    for number, section in enumerate(sections, start=1):
        lines += ["", f"## {number}. {section.question}", ""]
        if section.why:
            lines += [f"*Why it matters: {section.why}*", ""]
        lines.append(section.text)
        checks = [c for c in section.verification.sentences if c.method != "no-claim"]
        if section.status == "answered":
            supported = sum(c.supported for c in checks)
            lines += [
                "",
                f"*Verification: {supported} of {len(checks)} claims supported by the cited "
                "passages.*",
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


def plan_markdown(title: str, plan: Sequence[SubQuestion]) -> str:
    """The plan as markdown (shown while it awaits approval)."""
    lines = [f"# Research plan: {title}", ""]
    for number, item in enumerate(plan, start=1):
        lines.append(f"{number}. {item.question}" + (f" — {item.why}" if item.why else ""))
    return "\n".join(lines) + "\n"


# -- the graph -------------------------------------------------------------------------------------


def assemble_research_graph(
    parts: AssistantParts, research: ResearchSettings | None = None
) -> StateGraph[ResearchState]:
    """The uncompiled research graph over ``parts`` (for composition in users' own graphs)."""
    defaults = research or ResearchSettings()

    def budgets_of(state: ResearchState) -> ResearchSettings:
        return state.get("budgets") or defaults

    def plan(state: ResearchState) -> dict[str, Any]:
        topic = (state.get("topic") or "").strip()
        if not topic:
            raise EmptyTopicError(
                "the research topic is empty; give a topic, e.g. 'statins for primary prevention "
                "in older adults'"
            )
        budgets = budgets_of(state)
        heading, bullets = split_bullets(topic)
        update: dict[str, Any] = {
            "budgets": budgets,
            "title": heading,
            "sections": Reset(),
            "plan_calls": 0,
            "emergency_kind": None,
            "decision": "not_asked",
        }
        decision = triage_by_rules(topic, has_images=False)
        if decision.emergency:
            _emit("research_emergency", kind=decision.emergency_kind)
            return {**update, "plan": [], "emergency_kind": decision.emergency_kind,
                    "notes": Reset(), "plan_source": "none"}  # fmt: skip
        notes: list[str] = []
        counter = ModelCallCounter()
        if bullets:
            items = [SubQuestion(question=b, why="Listed in the request.") for b in bullets]
            source = "request"
        elif parts.text_model is None:
            items, source = rule_plan(topic), "rules"
        else:
            with counting(counter):
                items = model_plan(parts.text_model, topic, budgets.max_subquestions)
            source = "model"
            if not items:
                items, source = rule_plan(topic), "rules"
                notes.append(
                    "The model's plan could not be read; the plan was made by rules from the topic."
                )
        items, cut = _limit_plan(items, budgets.max_subquestions)
        _emit("plan", source=source, subquestions=[s.question for s in items])
        return {**update, "plan": items, "plan_source": source, "plan_calls": counter.count,
                "notes": Reset([*notes, *cut])}  # fmt: skip

    def fan_out(state: ResearchState) -> list[Send]:
        items = state.get("plan", [])
        budgets = budgets_of(state)
        remaining = max(0, budgets.max_model_calls - state.get("plan_calls", 0))
        share, extra = divmod(remaining, len(items))
        return [
            Send(
                "research_subquestion",
                BranchTask(
                    index=index,
                    total=len(items),
                    subquestion=item,
                    allowance=share + (1 if index < extra else 0),
                    budgets=budgets,
                ),
            )
            for index, item in enumerate(items)
        ]

    def after_plan(state: ResearchState) -> Any:
        if not state.get("plan"):
            return "report"
        if state.get("approve_plan"):
            return "approve"
        return fan_out(state)

    def approve(state: ResearchState) -> dict[str, Any]:
        # Nothing before interrupt(): on resume this node runs again from its start.
        items = state.get("plan", [])
        answer = interrupt(
            {
                "topic": state.get("topic", ""),
                "title": state.get("title", ""),
                "plan": [item.model_dump() for item in items],
                "question": APPROVAL_QUESTION,
            }
        )
        decision = parse_decision(answer)
        if decision.action == "cancel":
            return {"decision": "cancelled"}
        if decision.action == "edit":
            edited, cut = _limit_plan(decision.plan, budgets_of(state).max_subquestions)
            return {"decision": "edited", "plan": edited, "plan_source": "edited", "notes": cut}
        return {"decision": "accepted"}

    def after_approve(state: ResearchState) -> Any:
        return "report" if state.get("decision") == "cancelled" else fan_out(state)

    def research_subquestion(state: BranchTask) -> dict[str, Any]:
        number, total = state["index"] + 1, state["total"]
        question = state["subquestion"].question
        _emit("subquestion", index=number, total=total, question=question)
        section = research_branch(parts, state)
        _emit(
            "subquestion_done",
            index=number,
            total=total,
            question=question,
            status=section.status,
            records=len({e.source_id for e in section.evidence}),
            supported_fraction=section.verification.supported_fraction,
        )
        return {"sections": [section]}

    def report(state: ResearchState) -> dict[str, Any]:
        topic = state.get("topic", "").strip()
        title = state.get("title") or topic
        if state.get("decision") == "cancelled":
            return {"report": cancelled_report(topic, title, state.get("plan", []), parts.engine)}
        if state.get("emergency_kind"):
            text = emergency_answer(state.get("emergency_kind"))
            markdown = (
                f"# {title}\n\n{text}\n\n> **Not for clinical use.** {NOT_FOR_CLINICAL_USE}\n"
            )
            return {
                "report": Report(topic=topic, title=title, markdown=markdown, engine=parts.engine)
            }
        composed = compose_report(
            topic=topic,
            title=title,
            plan=state.get("plan", []),
            sections=state.get("sections", []),
            notes=state.get("notes", []),
            budgets=budgets_of(state),
            plan_calls=state.get("plan_calls", 0),
            plan_source=state.get("plan_source", ""),
            engine=parts.engine,
            extractive=parts.extractive,
            min_supported_fraction=parts.settings.min_supported_fraction,
        )
        _emit("report", sections=len(composed.sections), records=len(composed.bibliography))
        return {"report": composed}

    graph: StateGraph[ResearchState] = StateGraph(ResearchState)
    graph.add_node("plan", plan)
    graph.add_node("approve", approve)
    graph.add_node("research_subquestion", research_subquestion, input_schema=BranchTask)
    graph.add_node("report", report)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", after_plan, ["approve", "research_subquestion", "report"])
    graph.add_conditional_edges("approve", after_approve, ["research_subquestion", "report"])
    graph.add_edge("research_subquestion", "report")
    graph.add_edge("report", END)
    return graph


def build_research_graph_from_parts(
    parts: AssistantParts, research: ResearchSettings | None = None, **compile_kwargs: Any
) -> CompiledStateGraph:
    """Compile the research graph; a ``checkpointer`` given is allowed the research state types."""
    checkpointer = compile_kwargs.get("checkpointer")
    if isinstance(checkpointer, BaseCheckpointSaver):
        compile_kwargs["checkpointer"] = research_checkpointer(checkpointer)
    return assemble_research_graph(parts, research).compile(**compile_kwargs)


def build_research_graph(
    settings: Settings | None = None,
    *,
    text_model: BaseChatModel | None = None,
    index: EvidenceSearcher | None = None,
    **compile_kwargs: Any,
) -> CompiledStateGraph:
    """The compiled research graph for ``settings`` (no checkpointer unless one is passed).

    Invoke it with ``{"topic": "...", "approve_plan": False}``; the result's ``"report"`` is a
    :class:`Report`.
    """
    from medgraph.settings import Settings

    settings = settings or Settings()
    parts = parts_from_settings(settings, text_model=text_model, index=index)
    return build_research_graph_from_parts(parts, settings.research, **compile_kwargs)


def make_graph() -> CompiledStateGraph:
    """Entry point for ``langgraph.json``: settings from the environment, no checkpointer."""
    return build_research_graph()
