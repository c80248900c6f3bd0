"""Prompt texts of the answer evaluations (passages are rendered and fenced by the caller)."""

from __future__ import annotations

from medgraph.knowledge.untrusted import UNTRUSTED_DATA_NOTE

PUBMEDQA_RETRIEVAL = (
    "Answer the biomedical research question with yes, no or maybe, using ONLY the numbered "
    "literature passages below. Say maybe when the passages are mixed or inconclusive. First give "
    "one to three short reasons, each one claim that cites by number the passages stating it, then "
    "the answer. " + UNTRUSTED_DATA_NOTE
)

PUBMEDQA_CLOSED_BOOK = (
    "Answer the biomedical research question with yes, no or maybe, from what you know. Say maybe "
    "when the evidence is mixed or inconclusive. Give a short reasoning first, then the answer."
)

MCQ_RETRIEVAL = (
    "You are a medical expert answering an exam question. Relevant documents are quoted below; "
    "use them where they help. Think step by step briefly, then choose the one best option by "
    "its letter. " + UNTRUSTED_DATA_NOTE
)

MCQ_CLOSED_BOOK = (
    "You are a medical expert answering an exam question. Think step by step briefly, then choose "
    "the one best option by its letter."
)


def mcq_question(question: str, options: dict[str, str]) -> str:
    """The question followed by its options, one per line (``A. text``)."""
    lines = [question, "", "Options:"]
    lines.extend(f"{letter}. {text}" for letter, text in options.items())
    return "\n".join(lines)
