"""The research graph's sub-question branch is a compiled subgraph of the assistant's nodes."""

from __future__ import annotations

from medgraph.graphs.assistant import AssistantContext
from medgraph.graphs.config import GraphSettings, ResearchSettings
from medgraph.graphs.research import (
    BranchTask,
    SubQuestion,
    assemble_subquestion_graph,
    build_research_graph,
)
from medgraph.settings import Settings
from tests.graphs.support import KeywordIndex, corpus_documents

DOCS = corpus_documents(60)
QUESTION = "Mammography screening in HMO women"


def task(question: str, budgets: ResearchSettings) -> BranchTask:
    return BranchTask(
        index=0,
        total=1,
        subquestion=SubQuestion(question=question, why="test"),
        allowance=0,
        budgets=budgets,
    )


def test_each_sub_question_runs_through_the_compiled_subgraph() -> None:
    graph = build_research_graph(Settings.preset("offline"), index=KeywordIndex(DOCS))
    nodes = set(graph.get_graph(xray=1).nodes)
    for step in ("open", "retrieve", "write", "verify", "close"):
        assert f"research_subquestion:{step}" in nodes


def test_the_subgraph_answers_one_sub_question_within_its_evidence_budget() -> None:
    index = KeywordIndex(DOCS)
    context = AssistantContext(index=index, settings=GraphSettings(retrieve_k=20))
    budgets = ResearchSettings(evidence_per_subquestion=3, sentences_per_section=2)
    result = assemble_subquestion_graph().compile().invoke(task(QUESTION, budgets), context=context)
    (section,) = result["sections"]
    assert section.status == "answered" and section.question == QUESTION
    assert 0 < len(section.evidence) <= 3
    assert section.evidence_capped  # more on-subject passages matched than the budget reads
    numbers = {e.number for e in section.evidence}
    assert section.sentences and all(set(s.citations) <= numbers for s in section.sentences)
    assert index.queries[0] == QUESTION


def test_a_sub_question_the_index_cannot_answer_has_no_evidence() -> None:
    context = AssistantContext(index=KeywordIndex(DOCS))
    result = (
        assemble_subquestion_graph()
        .compile()
        .invoke(task("Quantum chromodynamics of gluons", ResearchSettings()), context=context)
    )
    (section,) = result["sections"]
    assert section.status == "no_evidence" and not section.sentences
