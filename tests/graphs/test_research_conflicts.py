"""Conflicts found, not assumed: a research report over two planted contradicting abstracts lists
the conflict with both citations; agreeing abstracts give no conflict; plans cover the facets."""

from __future__ import annotations

from pathlib import Path

from medgraph.assistant import Assistant
from medgraph.graphs.research import Report, model_conflicts, rule_plan
from medgraph.knowledge.conflicts import Statement
from medgraph.knowledge.types import Document
from medgraph.settings import Settings
from tests.graphs.support import KeywordIndex, corpus_documents
from tests.scripted import Call, ScriptedChatModel


def abstract(pmid: str, sections: list[tuple[str, str]]) -> Document:
    """A record with labelled sections, as the PubMedQA reader builds one."""
    text, ranges = "", []
    for label, body in sections:
        start = len(text) + (2 if text else 0)
        text = f"{text}\n\n{body}" if text else body
        ranges.append((label, start, len(text)))
    return Document(source_id=pmid, pmid=pmid, title=None, text=text, sections=tuple(ranges))


RAISES = abstract(
    "90000001",
    [
        (
            "OBJECTIVE",
            "To determine whether coffee consumption alters the risk of atrial fibrillation.",
        ),
        (
            "RESULTS",
            "Among 2,140 older adults followed for 8 years, daily coffee consumption increased the "
            "risk of atrial fibrillation in older adults (hazard ratio 1.42).",
        ),
        (
            "CONCLUSIONS",
            "Coffee consumption increased the risk of atrial fibrillation in older adults.",
        ),
    ],
)
LOWERS = abstract(
    "90000002",
    [
        ("OBJECTIVE", "The aim of this cohort study was to assess coffee and atrial fibrillation."),
        (
            "RESULTS",
            "In 3,310 older adults, daily coffee consumption reduced the risk of atrial "
            "fibrillation in older adults (hazard ratio 0.81).",
        ),
        (
            "CONCLUSIONS",
            "Coffee consumption reduced the risk of atrial fibrillation in older adults.",
        ),
    ],
)
AGREES = abstract(
    "90000003",
    [
        (
            "CONCLUSIONS",
            "In a crossover trial of 96 older adults, caffeinated coffee consumption increased "
            "episodes of paroxysmal atrial fibrillation compared with decaffeinated coffee.",
        ),
    ],
)
TOPIC = "Coffee consumption and atrial fibrillation in older adults"


def research(tmp_path: Path, documents: list[Document]) -> Report:
    settings = Settings(home=tmp_path / "home")
    settings.models = settings.models.model_copy(update={"engine": "extractive"})
    with Assistant(settings, index=KeywordIndex([*documents, *corpus_documents(20)])) as assistant:
        report = assistant.research(TOPIC)
    assert isinstance(report, Report)
    return report


def test_two_contradicting_abstracts_are_listed_with_both_citations(tmp_path: Path) -> None:
    report = research(tmp_path, [RAISES, LOWERS])

    number = {entry.source_id: entry.n for entry in report.bibliography}
    assert {"90000001", "90000002"} <= set(number)
    assert len(report.conflicts) == 1
    conflict = report.conflicts[0]
    assert {conflict.first, conflict.second} == {number["90000001"], number["90000002"]}
    assert "atrial fibrillation" in conflict.outcome
    limitations = report.markdown.split("## Limitations")[1].split("## Bibliography")[0]
    line = next(x for x in limitations.splitlines() if "Conflicting evidence" in x)
    assert f"[{number['90000001']}]" in line and f"[{number['90000002']}]" in line
    assert "increased the risk" in line and "reduced the risk" in line
    # aims and objectives are not findings: nothing quoted from those sections
    assert "To determine whether" not in report.markdown
    assert "The aim of this cohort study" not in report.markdown


def test_agreeing_abstracts_report_no_conflict(tmp_path: Path) -> None:
    report = research(tmp_path, [RAISES, AGREES])

    assert {"90000001", "90000003"} <= {entry.source_id for entry in report.bibliography}
    assert report.conflicts == []
    assert "Conflicting evidence" not in report.markdown
    assert any("No conflicting findings were found" in x for x in report.limitations)


def test_rule_plan_covers_the_topics_facets() -> None:
    questions = [s.question for s in rule_plan("Effectiveness and safety of colonoscopy")]
    assert len(questions) == 2
    assert "effective" in questions[0] and "colonoscopy" in questions[0]
    assert "safe" in questions[1] and "colonoscopy" in questions[1]
    # no facet named: the subject paired with the other noun phrases, as before
    assert [s.question for s in rule_plan("Risk factors for stroke")] == [
        "What is known about stroke?"
    ]


def test_the_model_judges_conflicts_in_one_constrained_call() -> None:
    statements = [
        Statement("Coffee raised the risk of atrial fibrillation.", "A", 1),
        Statement("Coffee lowered the risk of atrial fibrillation.", "B", 2),
        Statement("Coffee lowered atrial fibrillation in a second analysis.", "B", 2),
    ]

    def judge(call: Call) -> dict[str, object]:
        assert call.schema is not None
        indices = call.schema["properties"]["conflicts"]["items"]["properties"]["first"]["enum"]
        assert indices == [1, 2, 3]
        listing = "\n".join(m.text for m in call.messages)
        assert all(s.text in listing for s in statements) and "untrusted_data" in listing
        pairs = [(1, 2, "atrial fibrillation risk"), (2, 3, "same record")]
        return {"conflicts": [{"first": a, "second": b, "outcome": o} for a, b, o in pairs]}

    model = ScriptedChatModel(judge)
    found = model_conflicts(model, statements)
    assert len(model.calls) == 1
    # the pair from one record is dropped
    assert [(c.first.number, c.second.number, c.outcome) for c in found] == [
        (1, 2, "atrial fibrillation risk")
    ]
    assert model_conflicts(ScriptedChatModel(judge), statements[1:]) == []  # one record only
