"""Research planning: a topic becomes a list of sub-questions, each with why it matters.

- :func:`split_bullets`: the user's own bullet or numbered list, when the topic has one.
- :func:`rule_plan`: the extractive engine's plan, by rules (one sub-question per facet the topic
  names — effectiveness, safety, cost, ... — then the topic's noun phrases paired with its
  subject), deterministic.
- :func:`model_plan`: structured output from the text model.
- :func:`limit_plan`: the ``max_subquestions`` budget, with a note naming what was cut.
- :func:`parse_decision`: the answer to the plan-approval interrupt (accept, edit, cancel).
- :func:`plan_markdown`: the plan as markdown, shown while it awaits approval.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from medgraph.errors import MedgraphError
from medgraph.knowledge.citations import STOPWORDS

__all__ = [
    "GENERIC_WORDS",
    "PLAN_SYSTEM",
    "EmptyPlanError",
    "InvalidPlanDecisionError",
    "PlanDecision",
    "SubQuestion",
    "facets",
    "limit_plan",
    "model_plan",
    "noun_phrases",
    "parse_decision",
    "plan_markdown",
    "rule_plan",
    "split_bullets",
]

PLAN_SYSTEM = (
    "You plan a review of the biomedical literature. Break the user's research topic into at most "
    "{limit} focused sub-questions, each answerable from journal abstracts, in a sensible reading "
    "order, without overlap. For each, give in one sentence why it matters for the topic. Reply "
    "with JSON only."
)


class EmptyPlanError(MedgraphError, ValueError):
    """An edited plan holds no sub-questions."""


class InvalidPlanDecisionError(MedgraphError, ValueError):
    """A resume value is neither accept, cancel, nor a list of sub-questions."""


class SubQuestion(BaseModel):
    """One planned sub-question and why it matters for the topic."""

    question: str
    why: str = ""


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
GENERIC_WORDS = frozenset(_GENERIC_TEXT.split())
"""Generic words: they start no noun phrase, and do not name a sub-question's subject."""
_EXTRA_BREAKS = frozenset({"versus", "vs", "compared", "like", "regarding", "concerning"})

# Facets of a topic: the words that name one, and the sub-question that covers it ({subject}).
_FACETS: tuple[tuple[str, frozenset[str], str], ...] = (
    (
        "effectiveness",
        frozenset({"effectiveness", "efficacy", "effective", "efficacious", "benefit", "benefits"}),
        "How effective is {subject}: what outcomes and benefits are reported?",
    ),
    (
        "safety",
        frozenset({"safety", "safe", "harm", "harms", "adverse", "complication", "complications",
                   "toxicity"}),
        "How safe is {subject}: what adverse events and complications are reported?",
    ),
    (
        "cost",
        frozenset({"cost", "costs", "cost-effectiveness", "economic", "economics"}),
        "What are the costs and cost-effectiveness of {subject}?",
    ),
    (
        "accuracy",
        frozenset({"accuracy", "sensitivity", "specificity"}),
        "How accurate is {subject} for diagnosis?",
    ),
    (
        "mechanism",
        frozenset({"mechanism", "mechanisms", "pathophysiology", "pathway", "pathways"}),
        "What mechanisms underlie {subject}?",
    ),
    (
        "prognosis",
        frozenset({"prognosis", "prognostic"}),
        "What is the prognosis of {subject}?",
    ),
    (
        "epidemiology",
        frozenset({"prevalence", "incidence", "epidemiology", "burden"}),
        "What are the prevalence and incidence of {subject}?",
    ),
)  # fmt: skip


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
            while run and run[0].lower() in GENERIC_WORDS:
                run.pop(0)
            if run and not all(word.lower() in GENERIC_WORDS for word in run):
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


def facets(topic: str) -> list[str]:
    """The facets the topic names, in the order it names them ("effectiveness and safety of
    colonoscopy" -> ``["effectiveness", "safety"]``)."""
    found: list[str] = []
    for word in _WORD.findall(topic.lower()):
        for name, words, _ in _FACETS:
            if word in words and name not in found:
                found.append(name)
    return found


def rule_plan(topic: str) -> list[SubQuestion]:
    """The plan of the extractive engine: one sub-question per facet the topic names, then the
    topic's subject paired with each other noun phrase.

    ``"Effectiveness and safety of colonoscopy"`` gives "How effective is colonoscopy: ...?" and
    "How safe is colonoscopy: ...?". ``"Metformin and lactic acidosis in chronic kidney
    disease"`` gives "What is known about metformin and lactic acidosis?" and "... metformin and
    chronic kidney disease?". A topic with one noun phrase and no facet gives one sub-question
    about it; one with no noun phrase, the topic itself.
    """
    phrases = [_lower_initial(p, topic) for p in noun_phrases(topic)]
    if not phrases:
        text = topic.strip().rstrip("?.")
        return [SubQuestion(question=f"What is known about {text}?", why="The topic as asked.")]
    subject, others = phrases[0], phrases[1:]
    templates = {name: template for name, _, template in _FACETS}
    plan = [
        SubQuestion(
            question=templates[name].format(subject=subject),
            why=f"The topic asks about the {name} of {subject}.",
        )
        for name in facets(topic)
    ]
    plan += [
        SubQuestion(
            question=f"What is known about {subject} and {other}?",
            why=f'Relates the topic\'s subject to "{other}", a key term of the topic.',
        )
        for other in others
    ]
    return plan or [
        SubQuestion(question=f"What is known about {subject}?", why="The topic's only subject.")
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


def limit_plan(plan: list[SubQuestion], limit: int) -> tuple[list[SubQuestion], list[str]]:
    """The first ``limit`` sub-questions, and a budget note naming the rest when any were cut."""
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


def plan_markdown(title: str, plan: Sequence[SubQuestion]) -> str:
    """The plan as markdown (shown while it awaits approval)."""
    lines = [f"# Research plan: {title}", ""]
    for number, item in enumerate(plan, start=1):
        lines.append(f"{number}. {item.question}" + (f" — {item.why}" if item.why else ""))
    return "\n".join(lines) + "\n"
