"""Settings owned by the graphs package (the ``graph`` section of ``medgraph.Settings``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class GraphSettings(BaseModel):
    """Budgets and thresholds of the assistant and research graphs.

    Environment: ``MEDGRAPH_GRAPH__MAX_TOOL_STEPS``, ``MEDGRAPH_GRAPH__UNSUPPORTED=mark``, ...
    """

    retrieve_k: int = Field(default=6, ge=1, le=50, description="Passages per retrieval.")
    max_tool_steps: int = Field(default=4, ge=0, description="Reason -> tools rounds per question.")
    max_verify_rounds: int = Field(
        default=1, ge=0, description="Extra retrievals when support is low."
    )
    min_supported_fraction: float = Field(
        default=0.6, ge=0, le=1, description="Below this, verify asks for one more retrieval."
    )
    support_threshold: float = Field(
        default=0.5, ge=0, le=1, description="Per-sentence support score needed."
    )
    unsupported: Literal["remove", "mark"] = "remove"
    off_topic: Literal["remove", "mark"] = Field(
        default="remove",
        description="Claims not about the question: drop them, or keep them flagged [off-topic].",
    )
    read_whole_records: bool = Field(
        default=True,
        description="Extractive engine: read the other passages of the records about the question.",
    )
    relevance_floor: float = Field(
        default=0.5, ge=0, le=1, description="Per-sentence relevance to the question needed."
    )
    max_answer_sentences: int = Field(default=6, ge=1, le=20)
    clarify_ambiguous: bool = Field(
        default=True,
        description="Ask one clarifying question when triage finds the question ambiguous.",
    )
    max_series_slices: int = Field(
        default=85,
        ge=1,
        le=1000,
        description="Slices of a CT/MR series shown to the image model, sampled evenly.",
    )
    max_study_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="Largest study folder or zip (uncompressed bytes)."
    )
    max_study_files: int = Field(default=5000, ge=1, description="Most files in one study.")
    checkpoint_url: str | None = Field(
        default=None,
        description="postgresql://... for a shared Postgres checkpointer; SQLite file otherwise.",
    )
    reason_max_tokens: int = Field(
        default=96,
        ge=8,
        description="Token budget of one reasoner step (tool calls, or ready to answer): the "
        "writer composes the answer, so the reasoner only needs room for a decision.",
    )
    brief_tool_prompt: bool | None = Field(
        default=None,
        description="Show the reasoner each tool in two lines rather than its full schema "
        "(the decoder still enforces the schema). None: brief when the model runs on a CPU, "
        "where prefilling thousands of tokens of tool schemas dominates a step.",
    )
    search_first: bool = Field(
        default=False,
        description="The reasoner's first step in a turn with an index must call "
        "search_literature (its own query), not answer at once: for models that do not follow "
        "the tool instructions (a base model), so every answer rests on a search it wrote.",
    )
    reason_passage_chars: int | None = Field(
        default=300,
        ge=40,
        description="The reasoner sees each passage cut to this many characters (it decides "
        "whether to search or calculate; the writer reads passages whole). None: whole passages.",
    )
    write_max_tokens: int = Field(
        default=320, ge=16, description="Token budget of the writer's cited answer (JSON)."
    )
    judge_max_tokens: int = Field(
        default=24,
        ge=8,
        description="Token budget of one grounding verdict ({supported, relevant} booleans).",
    )
    max_turn_seconds: float | None = Field(
        # 100 s: with about 15 s to start the CLI and load the models, `medgraph ask` ends
        # within 2 minutes, and on an idle 2-core machine the real Gemma 3 270M has time to
        # search, write and be judged (verify skips the rewrite round that would not fit).
        default=100.0,
        gt=0,
        description="Wall-clock limit of one turn with a language model: past it, generation "
        "stops, further tool rounds and the model judge are skipped, the answer is quoted from "
        "the evidence if the writer had no time, and the answer's limits say what was cut. "
        "None: no limit.",
    )
    max_question_chars: int = Field(
        default=4000,
        ge=100,
        description="Longest question (characters): a long clinical vignette fits; pasted "
        "documents belong in the index.",
    )


class ResearchSettings(BaseModel):
    """Budgets of the research graph (the ``research`` section of ``medgraph.Settings``).

    Environment: ``MEDGRAPH_RESEARCH__MAX_SUBQUESTIONS=4``, ...
    """

    max_subquestions: int = Field(default=5, ge=1, le=20, description="Sub-questions per report.")
    evidence_per_subquestion: int = Field(
        default=5, ge=1, le=40, description="Most passages read for one sub-question."
    )
    sentences_per_section: int = Field(
        default=4, ge=1, le=20, description="Most sentences written for one sub-question."
    )
    max_model_calls: int = Field(
        default=60,
        ge=1,
        description="Model calls per report (plan, writing, judging), all branches together.",
    )
    max_parallel: int = Field(
        default=4, ge=1, le=32, description="Sub-questions researched at the same time."
    )
