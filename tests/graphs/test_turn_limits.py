"""The assistant graph's wall-clock limit with scripted chat models: a turn that runs out of time
ends with a well-formed, cited answer that says what was cut."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage

import medgraph.graphs.assistant as assistant_module
from medgraph.assistant import Assistant
from tests.graphs.support import KeywordIndex, corpus_documents, dev_questions
from tests.graphs.test_assistant_graph import EVIDENCE_BLOCK, grounded_handler, settings_for
from tests.scripted import Call, ScriptedChatModel, prompt_text

DOCS = corpus_documents(60)
QUESTION = dev_questions(1)[0]["question"]


def _ask(tmp_path: Path, model: ScriptedChatModel, **graph: Any) -> tuple[Any, KeywordIndex]:
    index = KeywordIndex(DOCS)
    with Assistant(
        settings_for(tmp_path, **graph), text_model=model, image_model=model, index=index
    ) as assistant:
        return assistant.ask(QUESTION), index


def test_no_time_left_quotes_the_evidence_and_says_so(tmp_path: Path) -> None:
    model = ScriptedChatModel(grounded_handler)
    answer, index = _ask(tmp_path, model, max_turn_seconds=1e-6)
    assert model.calls == []  # out of time before the first model call: nothing waits on one
    assert answer.route == ["triage", "retrieve", "reason", "write", "verify", "finalize"]
    assert answer.kind == "answer" and answer.citations
    assert {c.source_id for c in answer.citations} <= set(answer.retrieved) <= index.source_ids()
    assert "[1]" in answer.text
    assert any("reasoner stopped after 0 step" in limit for limit in answer.limits)
    assert any("quotes the evidence" in limit for limit in answer.limits)
    assert any("not by the model judge" in limit for limit in answer.limits)
    assert all(s.method != "judge" for s in answer.verification.sentences)
    assert answer.to_json_dict()["limits"] == answer.limits


def test_time_running_out_during_the_tool_loop_ends_the_loop_and_skips_the_judge(
    tmp_path: Path,
) -> None:
    def slow_searcher(call: Call) -> AIMessage | dict[str, Any]:
        if call.tools and not any(isinstance(m, ToolMessage) for m in call.messages):
            time.sleep(0.6)  # the first reasoner step outlasts the turn's limit
        return grounded_handler(call)

    model = ScriptedChatModel(slow_searcher)
    answer, index = _ask(tmp_path, model, max_turn_seconds=0.5, max_tool_steps=4)
    assert len(model.calls) == 1  # the search decision; no second step, writer or judge
    assert [t.name for t in answer.tool_calls] == ["search_literature"]
    assert answer.route == [
        "triage", "retrieve", "reason", "tools", "reason", "write", "verify", "finalize",
    ]  # fmt: skip
    assert answer.citations and {c.source_id for c in answer.citations} <= index.source_ids()
    assert any("cut short" in limit for limit in answer.limits)


def test_a_turn_within_its_limit_reports_no_limits(tmp_path: Path) -> None:
    model = ScriptedChatModel(grounded_handler)
    answer, _ = _ask(tmp_path, model, max_turn_seconds=600)
    assert answer.limits == []
    assert any(s.method == "judge" for s in answer.verification.sentences)


def test_search_first_makes_the_first_reasoner_step_write_a_search(tmp_path: Path) -> None:
    def answers_at_once(call: Call) -> AIMessage | dict[str, Any]:
        if call.tools and call.tool_choice == "auto":
            return AIMessage("No search needed.")
        return grounded_handler(call)  # a named choice: it calls search_literature

    plain = ScriptedChatModel(answers_at_once)
    answer, _ = _ask(tmp_path / "plain", plain)
    assert answer.tool_calls == [] and plain.calls[0].tool_choice == "auto"
    searching = ScriptedChatModel(answers_at_once)
    answer, _ = _ask(tmp_path / "first", searching, search_first=True)
    assert [t.name for t in answer.tool_calls] == ["search_literature"]
    assert [c.tool_choice for c in searching.calls if c.tools] == ["search_literature", "auto"]


def test_the_reasoner_leaves_the_writer_and_judge_their_share_of_the_turn(tmp_path: Path) -> None:
    def slow_searcher(call: Call) -> AIMessage | dict[str, Any]:
        if call.tools and not any(isinstance(m, ToolMessage) for m in call.messages):
            time.sleep(1.2)  # the first step uses more than half of the 2 s turn
        return grounded_handler(call)

    model = ScriptedChatModel(slow_searcher)
    answer, _ = _ask(tmp_path, model, max_turn_seconds=2.0, max_tool_steps=4)
    assert sum(1 for c in model.calls if c.tools) == 1  # no second reasoner step
    assert any(c.schema and "sentences" in c.schema["properties"] for c in model.calls)  # wrote
    assert any("leave the writer" in limit for limit in answer.limits)
    assert not any("writer" in limit and "no time" in limit for limit in answer.limits)


def test_a_step_that_only_repeats_earlier_calls_ends_the_tool_loop(tmp_path: Path) -> None:
    def repeats_its_search(call: Call) -> AIMessage | dict[str, Any]:
        if call.tools:  # every reasoner step asks for the same search
            query = {"query": "mitochondria programmed cell death"}
            call_id = f"search-{len(call.messages)}"
            return AIMessage(
                "", tool_calls=[{"name": "search_literature", "args": query, "id": call_id}]
            )
        return grounded_handler(call)

    model = ScriptedChatModel(repeats_its_search)
    answer, _ = _ask(tmp_path, model, max_turn_seconds=600, max_tool_steps=4)
    assert sum(1 for c in model.calls if c.tools) == 2  # the search, then its repeat
    assert [t.name for t in answer.tool_calls] == ["search_literature"]  # run once
    assert answer.route[:6] == ["triage", "retrieve", "reason", "tools", "reason", "write"]
    assert answer.citations


def _slow_writer_judged_unsupported(write_seconds: float) -> Any:
    """Writes slowly, and its judge finds the draft unsupported (verify would rewrite it)."""

    def handler(call: Call) -> AIMessage | dict[str, Any]:
        if call.schema and "sentences" in call.schema.get("properties", {}):
            time.sleep(write_seconds)
        if call.schema and "supported" in call.schema.get("properties", {}):
            return {"supported": False, "relevant": True}
        return grounded_handler(call)

    return handler


def _writes(model: ScriptedChatModel) -> int:
    return sum(1 for c in model.calls if c.schema and "sentences" in c.schema["properties"])


def test_a_rewrite_round_runs_when_the_turn_has_time_for_it(tmp_path: Path) -> None:
    model = ScriptedChatModel(_slow_writer_judged_unsupported(0.05))
    answer, _ = _ask(tmp_path, model, max_turn_seconds=600)
    assert _writes(model) == 2 and answer.route.count("write") == 2
    assert not any("rewrite" in limit for limit in answer.limits)


def test_no_time_for_a_rewrite_keeps_the_first_draft_judged_by_the_model(tmp_path: Path) -> None:
    # The first draft takes 1.2 s of a 2 s turn: less time is left than a rewrite would take.
    model = ScriptedChatModel(_slow_writer_judged_unsupported(1.2))
    answer, _ = _ask(tmp_path, model, max_turn_seconds=2.0)
    assert _writes(model) == 1
    assert answer.route[-3:] == ["write", "verify", "finalize"]
    assert answer.route.count("retrieve") == 1
    assert any("rewrite round was skipped" in limit for limit in answer.limits)
    assert not any("not by the model judge" in limit for limit in answer.limits)
    judged = [s for s in answer.verification.sentences if s.method != "no-claim"]
    assert judged and all(s.method == "judge" for s in judged)


def test_the_reasoner_reads_search_results_as_a_list_and_the_writer_whole(tmp_path: Path) -> None:
    model = ScriptedChatModel(grounded_handler)
    answer, _ = _ask(tmp_path, model, max_turn_seconds=600, reason_passage_chars=80)
    second_step = [c for c in model.calls if c.tools][1]
    (result,) = [m for m in second_step.messages if isinstance(m, ToolMessage)]
    listed = re.findall(r"^\[(\d+)\] (\S+): ", result.text, re.M)
    assert listed and not EVIDENCE_BLOCK.findall(result.text)  # numbers and sources, no passages
    previews = {n: text for _, n, text in EVIDENCE_BLOCK.findall(prompt_text(second_step))}
    writer = next(c for c in model.calls if c.schema and "sentences" in c.schema["properties"])
    whole = {n: text for _, n, text in EVIDENCE_BLOCK.findall(prompt_text(writer))}
    for n, _ in listed:  # the reasoner's evidence block previews each listed passage
        assert len(previews[n]) <= 80 and whole[n].startswith(previews[n].removesuffix(" …"))
        assert whole[n][:60] not in result.text
    assert any(len(whole[n]) > 80 for n, _ in listed)
    assert [t.name for t in answer.tool_calls] == ["search_literature"]


def test_a_rewrite_whose_check_is_cut_leaves_the_draft_the_model_judged(tmp_path: Path) -> None:
    judged = []

    def slow_second_judge(call: Call) -> AIMessage | dict[str, Any]:
        if call.schema and "supported" in call.schema.get("properties", {}):
            judged.append(call)
            if len(judged) > 1:
                time.sleep(2.5)  # the rewrite's verdicts outlast the 2 s turn
            return {"supported": False, "relevant": True}
        return grounded_handler(call)

    model = ScriptedChatModel(slow_second_judge)
    answer, _ = _ask(tmp_path, model, max_turn_seconds=2.0)
    assert _writes(model) == 2  # the rewrite ran
    assert any("the answer is the earlier draft" in limit for limit in answer.limits)
    assert not any("not by the model judge" in limit for limit in answer.limits)
    claims = [s for s in answer.verification.sentences if s.method != "no-claim"]
    assert claims and all(s.method == "judge" for s in claims)


def test_the_writer_stops_before_the_turn_ends_to_leave_the_judge_its_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bounds: list[tuple[int, float | None]] = []

    def recording_limits(model: Any, max_new_tokens: int, deadline: float | None) -> dict:
        bounds.append((max_new_tokens, deadline))
        return {}

    monkeypatch.setattr(assistant_module, "model_limits", recording_limits)
    model = ScriptedChatModel(grounded_handler)
    answer, _ = _ask(tmp_path, model, max_turn_seconds=100)
    settings = settings_for(tmp_path).graph
    writer = [d for n, d in bounds if n == settings.write_max_tokens]
    judge = [d for n, d in bounds if n == settings.judge_max_tokens]
    assert writer and judge and writer[0] is not None and judge[0] is not None
    # The judge generates up to the turn's end; the writer stops the judge's share before it.
    assert judge[0] - writer[0] == pytest.approx(100 * assistant_module.JUDGE_SHARE)
    assert any(s.method == "judge" for s in answer.verification.sentences)
