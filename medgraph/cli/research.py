"""``medgraph research``: a cited markdown report from a plan of sub-questions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from medgraph.cli.app import app
from medgraph.cli.options import (
    IndexOption,
    ModelOption,
    PresetOption,
    TextModelOption,
    settings_from_options,
)
from medgraph.cli.terminal import terminal_text

if TYPE_CHECKING:
    from medgraph.graphs.research import Report

PROMPT = "Accept the plan [a / Enter], edit it [e], cancel [c], or decide later [l]? "
EDIT_PROMPT = "New sub-questions, one per line; an empty line ends the list:"


def _say(text: str) -> None:
    typer.echo(text, err=True)


def print_event(event: dict[str, Any]) -> None:
    """One progress line on standard error: the plan, and which sub-question is being worked on."""
    name = event.get("event")
    if name == "plan":
        items = event.get("subquestions", [])
        _say(f"Plan ({event.get('source')}): {len(items)} sub-question(s).")
    elif name == "subquestion":
        _say(f"[{event['index']}/{event['total']}] researching: {event['question']}")
    elif name == "subquestion_done":
        _say(
            f"[{event['index']}/{event['total']}] {event['status']}: "
            f"{event['records']} record(s) retrieved."
        )
    elif name == "report":
        _say(f"Writing the report: {event['sections']} section(s), {event['records']} record(s).")


def print_plan(report: Report) -> None:
    """The plan awaiting approval, on standard error."""
    _say(f"\nResearch plan for: {report.title}")
    for number, item in enumerate(report.plan, start=1):
        _say(f"  {number}. {item.question}")
        if item.why:
            _say(f"     why: {item.why}")
    for note in report.budget_notes:
        _say(f"  note: {note}")


def read_decision() -> Any:
    """Accept, an edited list, cancel, or ``None`` (decide later) from standard input."""
    while True:
        _say(PROMPT)
        line = sys.stdin.readline()
        if not line:  # end of input: leave the run waiting
            return None
        answer = line.strip().lower()
        if answer in ("", "a", "accept"):
            return "accept"
        if answer in ("c", "cancel"):
            return "cancel"
        if answer in ("l", "later"):
            return None
        if answer in ("e", "edit"):
            _say(EDIT_PROMPT)
            items = []
            for raw in sys.stdin:
                if not raw.strip():
                    break
                items.append(raw.strip().lstrip("-*• ").strip())
            return items
        _say(f"Please answer a, e, c or l (got {line.strip()!r}).")


@app.command()
def research(
    topic: str | None = typer.Argument(
        None, help="The topic; a bullet list (one item a line) is used as the plan."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the markdown report to this file."),
    approve: bool = typer.Option(
        False, "--approve", help="Show the plan first; accept, edit or cancel it at the prompt."
    ),
    resume: str | None = typer.Option(
        None, "--resume", help="Continue a run waiting at plan approval (its thread id)."
    ),
    index: str | None = IndexOption,
    model: str | None = ModelOption,
    text_model: str | None = TextModelOption,
    preset: str | None = PresetOption,
    max_subquestions: int | None = typer.Option(
        None, "--max-subquestions", help="Most sub-questions researched."
    ),
    evidence: int | None = typer.Option(
        None, "--evidence", help="Most passages read per sub-question."
    ),
    max_model_calls: int | None = typer.Option(
        None, "--max-model-calls", help="Most language-model calls for the whole report."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object of the report."),
) -> None:
    """Plan sub-questions, research each in the indexed literature, write a cited report."""
    from medgraph.assistant import Assistant
    from medgraph.graphs.research import EmptyTopicError
    from medgraph.research import (
        NotAwaitingApprovalError,
        load_research,
        resume_research,
        run_research,
    )

    if resume is not None and topic is not None:
        raise typer.BadParameter("give either a TOPIC or --resume THREAD, not both")
    if resume is None and (topic is None or not topic.strip()):
        raise EmptyTopicError(
            "the research topic is empty; give a topic, e.g. medgraph research "
            "'statins for primary prevention in older adults'"
        )
    settings = settings_from_options(model=model, text_model=text_model, index=index, preset=preset)
    budgets: dict[str, Any] = {
        "max_subquestions": max_subquestions,
        "evidence_per_subquestion": evidence,
        "max_model_calls": max_model_calls,
    }
    with Assistant(settings) as assistant:
        if resume is not None:
            report = load_research(assistant, resume)
            if report.status != "awaiting_approval":
                raise NotAwaitingApprovalError(
                    f"research thread {resume!r} is not waiting for plan approval "
                    f"(status: {report.status})"
                )
        else:
            assert topic is not None
            report = run_research(
                assistant, topic, approve_plan=approve, on_event=print_event, **budgets
            )
        if report.status == "awaiting_approval":
            print_plan(report)
            decision = read_decision()
            if decision is None:
                _say(
                    f"The plan is waiting. Resume with: medgraph research --resume "
                    f"{report.thread_id}"
                )
            else:
                assert report.thread_id is not None
                report = resume_research(
                    assistant, report.thread_id, decision, on_event=print_event
                )
    _deliver(report, out, as_json)


def _deliver(report: Report, out: Path | None, as_json: bool) -> None:
    if report.status == "cancelled":
        _say("Research cancelled at plan approval; no report was written.")
    elif report.status == "done" and out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.markdown, encoding="utf-8")
        _say(f"Report written to {out}")
    if as_json:
        typer.echo(json.dumps(report.to_json_dict(), ensure_ascii=False))
    elif report.status == "done" and out is None:
        typer.echo(terminal_text(report.markdown))
    _say(f"Thread: {report.thread_id}")
