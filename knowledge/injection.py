"""Text in retrieved sources that addresses a model instead of a reader: injections and markup.

Retrieved passages are untrusted. :func:`looks_like_injection` flags phrases such as "ignore
previous instructions", role tags and tool-call requests; :func:`carries_markup` flags tag-like
markup (closing fence tags, ``<start_of_turn>``, ``<|im_start|>``, HTML elements). Both look at
the text as a reader sees it (:func:`~medgraph.knowledge.untrusted.visible_text`: NFKC, zero-width
and other invisible characters removed), so fullwidth and zero-width variants match too. The
retrieval step flags such passages, and the record of a flagged passage is quarantined as a whole
(:func:`usable_evidence`): no sentence of it is quoted or supports a claim. These are heuristics
for flagging and for keeping instructions out of answers, not a defence on their own: prompts
still fence every passage as quoted data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from medgraph.knowledge.citations import QuarantinedPassage
from medgraph.knowledge.types import Evidence
from medgraph.knowledge.untrusted import visible_text

INSTRUCTIONS_FLAG = "instructions"
"""The :attr:`~medgraph.knowledge.types.Evidence.flags` entry of a passage with instruction text."""

_INJECTION_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE | re.MULTILINE)
    for pattern in (
        r"\b(?:ignore|disregard|forget|override|bypass|skip)\s+(?:all\s+|any\s+|the\s+|your\s+|"
        r"these\s+|those\s+|every\s+)*(?:of\s+the\s+)?(?:previous|prior|above|preceding|earlier|"
        r"former|system|original|initial|safety|developer)?\s*(?:instructions?|prompts?|rules|"
        r"directions|directives|guidelines|guardrails|messages|context)\b",
        r"\byou are now\b",
        r"\bfrom now on,?\s+you\b",
        r"\b(?:pretend|act)\s+(?:to be|as if you|as an?\s+(?:ai|assistant|language model|chatbot|"
        r"unrestricted))\b",
        r"\bsystem\s+prompt\b",
        r"\b(?:developer|system)\s+(?:mode|message|instructions?)\b",
        r"\bnew\s+(?:instructions?|task|role)\s*:",
        r"\byour\s+(?:new\s+)?(?:task|role|instructions?|goal)\s+(?:is|are|now)\b",
        r"\b(?:reveal|print|output|repeat|show)\s+(?:me\s+)?(?:your|the)\s+(?:system\s+)?"
        r"(?:prompt|instructions)\b",
        r"\b(?:do not|don't|never)\s+(?:tell|inform|mention (?:this|it) to)\s+the\s+user\b",
        r"\b(?:call|invoke|execute|trigger)\s+(?:the\s+)?(?:tool|function)\b",
        r"\b(?:call|invoke|run|execute|trigger)\s+`?[a-z]+_[a-z_]+`?\s*(?:\(|with\b)",
        r"\b(?:search_literature|analyze_image|search_pubmed|pubmed_search)\b",
        r"\brespond\s+only\s+with\b",
        r"\bas\s+an?\s+(?:ai|assistant|language model),?\s+you\s+(?:must|should|will)\b",
        r"<\|?/?\s*(?:start_of_turn|end_of_turn|im_start|im_end|system|user|assistant|model|bos|"
        r"eos|endoftext|unused\d+|start_of_image|end_of_image)\s*\|?>",
        r"\[/?INST\]|<<\s*/?SYS\s*>>",
        r"^\s*(?:#{1,4}\s*)?(?:system|assistant|instruction|instructions)\s*:",
        r'"tool_calls?"\s*:|"(?:name|function)"\s*:\s*"(?:search|analy[sz]e|calculate)',
    )
)


def looks_like_injection(text: str) -> bool:
    """Heuristically, does ``text`` address the model rather than the reader?

    Flags phrases such as "ignore previous instructions", "you are now", "system prompt",
    requests to call tools, and chat-template role tags. Meant for logging and flagging evidence,
    not for dropping it: a medical abstract that discusses prompt injection would also match.
    Fullwidth and zero-width variants match as their plain forms.
    """
    seen = visible_text(text)[0]
    return any(pattern.search(seen) for pattern in _INJECTION_PATTERNS)


# A tag: "<tag ...>", "</tag>", "<|special|>", "<unused94>", "<!-- ... -->". "p < 0.05", "<5 mm"
# and "a<b" written without a closing ">" are not tags.
_MARKUP = re.compile(
    r"<\s*(?:/\s*[A-Za-z_][^<>\n]{0,80}|[A-Za-z_][\w:-]*(?:\s[^<>\n]{0,200})?|\|[^<>\n]{1,40}\||!--)>"
)


def carries_markup(text: str) -> bool:
    """Whether ``text`` holds a tag-like piece of markup (an element, closing tag or special token).

    Abstracts are plain text; a tag in one is a payload or an extraction artefact, never a finding.
    Fullwidth brackets (``＜/untrusted_data＞``) and zero-width characters inside a tag count.
    """
    return _MARKUP.search(visible_text(text)[0]) is not None


def is_instruction_text(text: str) -> bool:
    """Injection or markup (:func:`looks_like_injection`, :func:`carries_markup`): never a claim."""
    return looks_like_injection(text) or carries_markup(text)


def flag_instructions(evidence: Sequence[Evidence]) -> list[Evidence]:
    """``evidence`` with :data:`INSTRUCTIONS_FLAG` added to each passage that carries
    instructions or markup (:func:`is_instruction_text`); the others are returned unchanged."""
    return [
        item.model_copy(update={"flags": (*item.flags, INSTRUCTIONS_FLAG)})
        if INSTRUCTIONS_FLAG not in item.flags and is_instruction_text(item.chunk.text)
        else item
        for item in evidence
    ]


QUARANTINE_REASON = (
    "quarantined: the passage holds text addressed to a model (instructions or markup), so no "
    "passage of its record is quoted or used as evidence"
)
"""Why a flagged passage is listed as retrieved but never quoted (the verification report)."""
SIBLING_REASON = (
    "quarantined: another passage of this record holds text addressed to a model, so no passage "
    "of the record is quoted or used as evidence"
)
"""Why an unflagged passage of a quarantined record is not quoted either."""


def carries_instructions(item: Evidence) -> bool:
    """Whether ``item`` was flagged at retrieval or its text carries instructions or markup."""
    return INSTRUCTIONS_FLAG in item.flags or is_instruction_text(item.chunk.text)


def quarantined_records(evidence: Sequence[Evidence]) -> set[str]:
    """Source ids of the records with a passage in ``evidence`` that carries instructions: such a
    record is quarantined as a whole, never quoted and never supporting a claim."""
    return {item.source_id for item in evidence if carries_instructions(item)}


def usable_evidence(evidence: Sequence[Evidence]) -> list[Evidence]:
    """``evidence`` without the passages of quarantined records (:func:`quarantined_records`)."""
    records = quarantined_records(evidence)
    return [item for item in evidence if item.source_id not in records]


def quarantine_report(evidence: Sequence[Evidence]) -> list[QuarantinedPassage]:
    """One entry per passage of ``evidence`` left out by :func:`usable_evidence` (each chunk
    once), with the reason."""
    records = quarantined_records(evidence)
    chunks = {item.chunk.chunk_id: item for item in evidence if item.source_id in records}
    return [
        QuarantinedPassage(
            source_id=item.source_id,
            chunk_id=chunk,
            reason=QUARANTINE_REASON if carries_instructions(item) else SIBLING_REASON,
        )
        for chunk, item in chunks.items()
    ]


__all__ = [
    "INSTRUCTIONS_FLAG",
    "QUARANTINE_REASON",
    "SIBLING_REASON",
    "carries_instructions",
    "carries_markup",
    "flag_instructions",
    "is_instruction_text",
    "looks_like_injection",
    "quarantine_report",
    "quarantined_records",
    "usable_evidence",
]
