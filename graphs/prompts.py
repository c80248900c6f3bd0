"""Prompt texts of the assistant graph. Untrusted text (passages, findings, tool output) is always
fenced by the caller in the one ``<untrusted_data>`` block that ``UNTRUSTED_DATA_NOTE`` explains."""

from __future__ import annotations

from medgraph.knowledge.untrusted import UNTRUSTED_DATA_NOTE

REASON_SYSTEM = (
    "You are a careful medical research assistant. Gather what you need to answer the user's "
    "question: search the literature, analyse attached images by their ids, or run clinical "
    "calculators. When you have enough, answer briefly without calling a "
    "tool. " + UNTRUSTED_DATA_NOTE
)

WRITE_SYSTEM = (
    "Write a short answer to the user's question using ONLY the numbered evidence passages below. "
    "Each sentence states one claim and cites the passages that support it by number. Do not add "
    "facts the passages do not state. Every sentence must be about the question: leave out "
    "passages about other studies or subjects, even when they share words with it. For a yes/no "
    "or comparative question, lead with the evidence's own conclusion (its conclusions, or the "
    "sentences that state the finding). State findings, never a study's aim, objective or "
    "method. Say when the cited passages disagree, and when only one source supports the answer. "
    "If the passages do not answer the question, say so in one sentence with no citation. "
    + UNTRUSTED_DATA_NOTE
)

IMAGE_PROMPT = (
    "Describe the medically relevant findings in this image in two or three sentences, with the "
    "user's question in view. Do not give a diagnosis with certainty.\nQuestion: {question}"
)

GROUNDING_JUDGE_PROMPT = (
    "Judge one sentence of an answer. supported: does the quoted passage state what the sentence "
    "claims? relevant: is the sentence about the question (not about another study or subject "
    'that merely shares words with it)? Answer with JSON {{"supported": true|false, '
    '"relevant": true|false}}.\nQuestion: {question}\n{passages}\nSentence: {claim}'
)
# The claim comes last: the verdicts on sentences that cite the same passages share the whole
# prompt before it, which the transformers engine prefills once (see agents/engines/prefix_cache).

JUDGE_PROMPT = (
    'Does the quoted passage support the claim? Answer with JSON {{"supported": true}} or '
    '{{"supported": false}}.\nClaim: {claim}\n{passages}'
)

SERIES_PROMPT = (
    "The {shown} images below are slices of one {description}, in order from the first slice to "
    "the last: {shown} of its {slice_count} slices, sampled evenly{spacing}. {windowing} Each "
    "image is followed by its label SLICE n. Describe the medically relevant findings in two or "
    "three sentences and say which slices (SLICE numbers) show each one. Do not give a "
    "diagnosis with certainty."
)

CT_WINDOWING_NOTE = (
    "Each slice shows three CT windows as colour channels: red wide (-1024 to 1024 HU), green "
    "soft tissue (-135 to 215 HU), blue brain (0 to 80 HU)."
)

VIEWS_PROMPT = (
    "The {count} images below are views of one examination ({views}). Read them together and "
    "describe the medically relevant findings in two or three sentences, naming the view that "
    "shows each. Do not give a diagnosis with certainty."
)

COMPARISON_PROMPT = (
    "The images below are two studies of the same patient and modality: first the PRIOR study, "
    "then the CURRENT study ({description}). Compare them: describe what is new, resolved, "
    "better, worse or unchanged in the current study, in two or three sentences. Do not give a "
    "diagnosis with certainty."
)

QUESTION_LINE = "Question: {question}"
