"""The research graph with scripted models: plan, fan-out, one global citation numbering, budgets,
verification, rule-based planning, and embedding the graph in a user's own StateGraph."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from typing_extensions import TypedDict

from medgraph.assistant import Assistant
from medgraph.graphs.research import (
    NO_EVIDENCE_SECTION,
    NOT_RESEARCHED_SECTION,
    EmptyTopicError,
    Report,
    build_research_graph,
    noun_phrases,
    rule_plan,
    split_bullets,
)
from medgraph.graphs.safety import NOT_FOR_CLINICAL_USE
from medgraph.knowledge.types import Evidence
from medgraph.settings import Settings
from tests.graphs.support import KeywordIndex, corpus_documents, dev_questions
from tests.scripted import Call, ScriptedChatModel

DOCS = corpus_documents(60)
QUESTIONS = dev_questions(3)
ABSENT = "Zebrafinch xylophony quasicrystals?"
PLAN = [
    {"question": QUESTIONS[0]["question"], "why": "Uptake of screening."},
    {"question": QUESTIONS[2]["question"], "why": "Genetics of vascular risk."},
    {"question": ABSENT, "why": "Nothing in the index covers it."},
]
TOPIC = "Prevention in primary care: screening uptake and inherited cardiovascular risk"
EVIDENCE_BLOCK = re.compile(
    r'<untrusted_data source="PMID:(\d+)" n="(\d+)"[^>]*>\n(.*?)\n</untrusted_data ', re.S
)
MARKER = re.compile(r"\[(\d+)\]")


def settings_for(tmp_path: Path, **research: Any) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.models = settings.models.model_copy(update={"engine": "transformers"})
    settings.research = settings.research.model_copy(update=research)
    return settings


def prompt(call: Call) -> str:
    return "\n".join(m.text for m in call.messages)


def asked(call: Call) -> str:
    return next(m.text for m in call.messages if isinstance(m, HumanMessage))


class Scripted:
    """Plans ``PLAN``; writes sentences copied from three evidence blocks, each citing its block;
    the judge supports every sentence except those containing ``reject``."""

    def __init__(self, plan: Any = None, reject: str = "\x00", fabricate: bool = False) -> None:
        self.plan = PLAN if plan is None else plan
        self.reject = reject
        self.fabricate = fabricate
        self.cited: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self.model = ScriptedChatModel(self)

    def __call__(self, call: Call) -> AIMessage | dict[str, Any] | str:
        properties = (call.schema or {}).get("properties", {})
        if "subquestions" in properties:
            return {"subquestions": self.plan} if isinstance(self.plan, list) else self.plan
        if "sentences" in properties:
            sentences, pmids = [], []
            blocks = EVIDENCE_BLOCK.findall(prompt(call))
            # the first two passages (often two chunks of one record) and the next other record
            chosen = (
                blocks[:2] + [b for b in blocks[2:] if b[0] not in {x[0] for x in blocks[:2]}][:1]
            )
            for pmid, number, body in chosen:
                sentence = body.strip().split(". ")[0].rstrip(".") + "."
                sentences.append({"text": sentence, "citations": [int(number)]})
                pmids.append(pmid)
            if self.fabricate:
                sentences.append(
                    {"text": "Aspirin cures 97% of pancreatic cancers.", "citations": [1]}
                )
            with self.lock:
                self.cited[asked(call)] = pmids
            return {"sentences": sentences}
        if "supported" in properties:
            return {"supported": self.reject not in prompt(call), "relevant": True}
        if "conflicts" in properties:
            return {"conflicts": []}
        return AIMessage("unexpected call")


def run(tmp_path: Path, script: Scripted, topic: str = TOPIC, **research: Any) -> Report:
    index = KeywordIndex(DOCS)
    settings = settings_for(tmp_path, **research)
    with Assistant(
        settings, text_model=script.model, image_model=script.model, index=index
    ) as assistant:
        report = assistant.research(topic)
    assert isinstance(report, Report)
    return report


def markers_in_reading_order(markdown: str) -> list[int]:
    body = markdown.split("## Bibliography")[0]
    return [int(n) for n in MARKER.findall(body)]


def test_plan_fan_out_and_one_bibliography_of_cited_records(tmp_path: Path) -> None:
    script = Scripted()
    report = run(tmp_path, script)

    assert report.status == "done"
    assert [s.question for s in report.plan] == [p["question"] for p in PLAN]
    assert [s.question for s in report.sections] == [p["question"] for p in PLAN]
    # Each branch cited records of its own; the report numbers them once, in reading order.
    markers = markers_in_reading_order(report.markdown)
    first_seen = list(dict.fromkeys(markers))
    assert first_seen == list(range(1, len(first_seen) + 1))
    assert [e.n for e in report.bibliography] == first_seen
    cited_pmids = {pmid for pmids in script.cited.values() for pmid in pmids}
    assert {e.source_id for e in report.bibliography} == cited_pmids
    assert len(cited_pmids) == 4  # two records per answered branch
    # two chunks of one record cited by one branch share one number
    first_section = report.sections[0]
    assert len(first_section.citations) == 3
    assert len({c.n for c in first_section.citations}) == 2
    ids = KeywordIndex(DOCS).source_ids()
    bibliography = report.markdown.split("## Bibliography")[1]
    for entry in report.bibliography:
        assert entry.source_id in ids
        assert f"PMID: {entry.pmid}" in entry.text
        assert f"https://pubmed.ncbi.nlm.nih.gov/{entry.pmid}/" in entry.text
        assert entry.text.startswith(f"[{entry.n}] ") and entry.text in bibliography
    # Section citations carry the global numbers of the records they quote.
    number_of = {e.source_id: e.n for e in report.bibliography}
    for section in report.sections[:2]:
        assert section.status == "answered" and section.citations
        for citation in section.citations:
            assert citation.n == number_of[citation.source_id]
            assert f"[{citation.n}]" in section.text
    assert report.verification.claims >= 4 and report.verification.supported_fraction == 1.0
    assert report.notice == NOT_FOR_CLINICAL_USE and NOT_FOR_CLINICAL_USE in report.markdown
    for heading in ("## Summary", "## Limitations", "## Bibliography", f"# {TOPIC}"):
        assert heading in report.markdown


def test_report_sections_still_cite_per_passage_under_record_numbers(tmp_path: Path) -> None:
    """The assistant's per-record citations leave the report's section citations as they were."""
    report = run(tmp_path, Scripted())
    index = KeywordIndex(DOCS)
    texts = {c.chunk_id: c.text for c, _ in index.chunks}
    number_of = {e.source_id: e.n for e in report.bibliography}
    assert len(number_of) == len(report.bibliography)  # one bibliography entry per record
    for section in report.sections[:2]:
        chunk_ids = [c.chunk_id for c in section.citations]
        assert len(chunk_ids) == len(set(chunk_ids)) == 3  # one citation per cited passage
        for citation in section.citations:
            assert citation.n == number_of[citation.source_id]
            assert [(p.chunk_id, p.quote, p.start, p.end) for p in citation.passages] == [
                (citation.chunk_id, citation.quote, citation.start, citation.end)
            ]
            assert citation.quote in texts[citation.chunk_id]
        assert {int(n) for n in MARKER.findall(section.text)} == {c.n for c in section.citations}


def test_sub_question_without_evidence_is_reported_not_filled(tmp_path: Path) -> None:
    script = Scripted()
    report = run(tmp_path, script)
    empty = report.sections[2]
    assert empty.status == "no_evidence"
    assert empty.text == NO_EVIDENCE_SECTION and empty.citations == []
    assert ABSENT not in script.cited  # nothing was written for it
    section_text = report.markdown.split(f"## 3. {ABSENT}")[1].split("## Limitations")[0]
    assert NO_EVIDENCE_SECTION in section_text and not MARKER.search(section_text)
    limitations = report.markdown.split("## Limitations")[1].split("## Bibliography")[0]
    assert f'Sub-question 3 ("{ABSENT}"): no indexed evidence was found' in limitations


class NearestIndex(KeywordIndex):
    """Like dense retrieval: always returns ``k`` passages, the best keyword matches first."""

    def search(self, query: str, k: int = 10, **kwargs: Any) -> list[Evidence]:
        hits = super().search(query, k=k)
        chosen = {e.chunk.chunk_id for e in hits}
        rest = [(c, d) for c, d in self.chunks if c.chunk_id not in chosen]
        return hits + [Evidence(chunk=c, document=d, score=0.0) for c, d in rest[: k - len(hits)]]


def test_unrelated_nearest_neighbours_are_not_evidence(tmp_path: Path) -> None:
    script = Scripted()
    settings = settings_for(tmp_path)
    with Assistant(
        settings, text_model=script.model, image_model=script.model, index=NearestIndex(DOCS)
    ) as assistant:
        report = assistant.research(TOPIC)
    empty = report.sections[2]
    assert empty.status == "no_evidence" and empty.text == NO_EVIDENCE_SECTION
    assert ABSENT not in script.cited
    assert "shared no subject word with the sub-question" in report.markdown
    assert [s.status for s in report.sections[:2]] == ["answered", "answered"]


def test_every_model_call_is_counted(tmp_path: Path) -> None:
    script = Scripted()
    report = run(tmp_path, script)
    # 1 plan + 2 answered branches x (1 write + one judge call per sentence) + 1 conflict check
    assert report.model_calls == len(script.model.calls) == 1 + 2 * (1 + 3) + 1
    assert any("No conflicting findings were found" in x for x in report.limitations)


def test_budgets_cut_the_report_short_and_say_so(tmp_path: Path) -> None:
    script = Scripted()
    # 1 plan call leaves 2 for three branches: 1, 1 and 0 calls.
    report = run(tmp_path, script, max_model_calls=3, evidence_per_subquestion=2)
    assert len(script.model.calls) <= 3 and report.model_calls == len(script.model.calls)
    first, second, third = report.sections
    assert third.status == "not_researched" and third.text == NOT_RESEARCHED_SECTION
    assert first.status == "answered" and second.status == "answered"
    # no calls left for the judge: claims were checked lexically, and the report says so
    assert {c.method for c in first.verification.sentences} == {"lexical+embedding"}
    limitations = report.markdown.split("## Limitations")[1]
    assert "Model-call budget" in limitations and "was not researched" in limitations
    assert "checked lexically, not by the model" in limitations
    assert "Evidence budget: at most 2 passages" in limitations
    for section in (first, second):
        assert len({c.source_id for c in section.citations}) <= 2


def test_sub_question_budget_truncates_the_plan(tmp_path: Path) -> None:
    report = run(tmp_path, Scripted(), max_subquestions=2)
    assert [s.question for s in report.plan] == [p["question"] for p in PLAN[:2]]
    assert len(report.sections) == 2
    assert any("only the first 2 were researched" in note for note in report.budget_notes)
    assert ABSENT in report.markdown.split("## Limitations")[1]


def test_unsupported_sentences_are_removed(tmp_path: Path) -> None:
    script = Scripted(reject="97%", fabricate=True)
    report = run(tmp_path, script)
    assert "97%" not in report.markdown.split("## Limitations")[0]
    assert report.verification.removed == 2  # one per answered branch
    assert report.verification.supported_fraction < 1.0
    assert "1 unsupported sentence removed" in report.markdown


def test_unsupported_sentences_can_be_marked_instead(tmp_path: Path) -> None:
    script = Scripted(reject="97%", fabricate=True)
    index = KeywordIndex(DOCS)
    settings = settings_for(tmp_path)
    settings.graph = settings.graph.model_copy(update={"unsupported": "mark"})
    with Assistant(settings, text_model=script.model, image_model=script.model, index=index) as a:
        report = a.research(TOPIC)
    assert report.verification.marked == 2 and report.verification.removed == 0
    flag = re.compile(r"97% of pancreatic cancers \[\d+\]\. \[unsupported\]")
    flagged = [s for s in report.sections if flag.search(s.text)]
    assert len(flagged) == 2
    assert "kept but marked [unsupported]" in report.markdown


def test_unusable_model_plan_falls_back_to_rules(tmp_path: Path) -> None:
    script = Scripted(plan={"subquestions": "not a list"})
    report = run(tmp_path, script, topic="Mammography screening in HMO women")
    assert [s.question for s in report.plan] == [s.question for s in rule_plan(report.topic)]
    assert any("made by rules" in note for note in report.limitations)


def test_bullet_list_is_the_plan_without_a_model_call(tmp_path: Path) -> None:
    script = Scripted()
    topic = f"Screening topics:\n- {QUESTIONS[0]['question']}\n- {QUESTIONS[1]['question']}"
    report = run(tmp_path, script, topic=topic)
    assert report.title == "Screening topics"
    assert [s.question for s in report.plan] == [QUESTIONS[0]["question"], QUESTIONS[1]["question"]]
    assert not any(
        "subquestions" in (c.schema or {}).get("properties", {}) for c in script.model.calls
    )


def test_empty_topic_is_a_clear_error(tmp_path: Path) -> None:
    script = Scripted()
    settings = settings_for(tmp_path)
    with (
        Assistant(settings, text_model=script.model, index=KeywordIndex(DOCS)) as assistant,
        pytest.raises(EmptyTopicError, match="topic is empty"),
    ):
        assistant.research("   ")
    graph = build_research_graph(Settings.preset("offline"), index=KeywordIndex(DOCS))
    with pytest.raises(EmptyTopicError):
        graph.invoke({"topic": ""})
    assert script.model.calls == []


def test_emergency_topic_gets_the_emergency_answer(tmp_path: Path) -> None:
    script = Scripted()
    report = run(tmp_path, script, topic="I have crushing chest pain right now and my arm is numb")
    assert "emergency" in report.markdown.lower() and report.sections == []
    assert script.model.calls == []


def test_rule_plan_pairs_the_subject_with_each_noun_phrase() -> None:
    topic = "Metformin and lactic acidosis in chronic kidney disease"
    assert noun_phrases(topic) == ["Metformin", "lactic acidosis", "chronic kidney disease"]
    plan = rule_plan(topic)
    assert [s.question for s in plan] == [
        "What is known about metformin and lactic acidosis?",
        "What is known about metformin and chronic kidney disease?",
    ]
    assert rule_plan(topic) == plan  # deterministic
    assert noun_phrases("Effect of vitamin D on fracture risk in older adults") == [
        "vitamin D",
        "fracture risk",
        "older adults",
    ]
    assert noun_phrases("Safety questions about statins") == ["statins"]
    assert split_bullets("Asthma:\n1. inhaled steroids\n2) leukotriene antagonists") == (
        "Asthma",
        ["inhaled steroids", "leukotriene antagonists"],
    )
    assert split_bullets("a single line topic") == ("a single line topic", [])


# -- the README's composition example, as written there ------------------------------------------


class Pipeline(TypedDict, total=False):
    topic: str
    approve_plan: bool
    report: Report
    digest: str


def digest(state: Pipeline) -> dict[str, str]:
    report = state["report"]
    return {"digest": f"{report.title}: {len(report.bibliography)} records cited"}


def build_pipeline(research: Any, **compile_kwargs: Any) -> Any:
    pipeline = StateGraph(Pipeline)
    pipeline.add_node("research", research)  # the compiled research graph is one node
    pipeline.add_node("digest", digest)
    pipeline.add_edge(START, "research")
    pipeline.add_edge("research", "digest")
    pipeline.add_edge("digest", END)
    return pipeline.compile(**compile_kwargs)


def test_research_graph_as_a_node_of_a_users_graph() -> None:
    research = build_research_graph(Settings.preset("offline"), index=KeywordIndex(DOCS))
    app = build_pipeline(research)
    result = app.invoke({"topic": "Mammography screening in HMO women"})
    report = result["report"]
    assert isinstance(report, Report) and report.status == "done" and report.bibliography
    assert result["digest"] == (
        f"Mammography screening in HMO women: {len(report.bibliography)} records cited"
    )


def test_plan_approval_inside_a_users_graph() -> None:
    research = build_research_graph(Settings.preset("offline"), index=KeywordIndex(DOCS))
    app = build_pipeline(research, checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "pipeline-1"}}
    topic = "Mammography screening in HMO women"
    first = app.invoke({"topic": topic, "approve_plan": True}, config)
    (pending,) = first["__interrupt__"]
    assert pending.value["plan"] and "digest" not in first
    result = app.invoke(Command(resume="accept"), config)
    assert result["report"].status == "done"
    assert result["digest"].startswith(f"{topic}: ")
