"""A user's own LangChain tool through Assistant(tools=...) and build_assistant_graph(tools=...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from medgraph.assistant import Assistant
from medgraph.graphs.assistant import build_assistant_graph
from medgraph.settings import Settings
from medgraph.tools.registry import ToolNameConflictError
from tests.graphs.support import KeywordIndex, corpus_documents
from tests.scripted import Call, ScriptedChatModel, prompt_text

DOCS = corpus_documents(60)
QUESTION = "What dose of metformin does our ward formulary list for adults?"
DOSE = "500 mg twice daily"


@tool
def ward_formulary_dose(drug: str) -> str:
    """The adult dose of ``drug`` in this ward's formulary."""
    return f"{drug}: {DOSE}"


def formulary_handler(call: Call) -> AIMessage | dict[str, Any]:
    """Call the formulary tool once, then write the dose it returned (no citation)."""
    if call.schema and "sentences" in call.schema.get("properties", {}):
        text = prompt_text(call)
        assert f"metformin: {DOSE}" in text, "the tool result reaches the writer"
        return {"sentences": [{"text": f"The ward formulary lists {DOSE}.", "citations": []}]}
    if call.schema and "supported" in call.schema.get("properties", {}):
        return {"supported": False, "relevant": True}
    if not any(isinstance(m, ToolMessage) for m in call.messages):
        return AIMessage(
            "",
            tool_calls=[{"name": "ward_formulary_dose", "args": {"drug": "metformin"}, "id": "f1"}],
        )
    return AIMessage("The formulary answered.")


def settings_for(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.models = settings.models.model_copy(update={"engine": "transformers"})
    return settings


def test_a_user_tool_is_offered_called_used_and_shown(tmp_path: Path) -> None:
    model = ScriptedChatModel(formulary_handler)
    with Assistant(
        settings_for(tmp_path),
        text_model=model,
        image_model=model,
        index=KeywordIndex(DOCS),
        tools=[ward_formulary_dose],
    ) as assistant:
        answer = assistant.ask(QUESTION)
    reasoner_calls = [c for c in model.calls if c.tools]
    assert reasoner_calls and all("ward_formulary_dose" in c.tools for c in reasoner_calls)
    assert "search_literature" in reasoner_calls[0].tools, "the defaults stay offered"
    assert answer.route[:4] == ["triage", "retrieve", "reason", "tools"]
    assert DOSE in answer.text
    (use,) = answer.tool_calls
    assert use.name == "ward_formulary_dose" and use.result == f"metformin: {DOSE}"
    assert answer.to_json_dict()["tool_calls"][0]["name"] == "ward_formulary_dose"


def test_build_assistant_graph_takes_user_tools() -> None:
    model = ScriptedChatModel(formulary_handler)
    settings = Settings.preset("offline")
    settings.models = settings.models.model_copy(update={"engine": "transformers"})
    graph = build_assistant_graph(
        settings,
        text_model=model,
        image_model=model,
        index=KeywordIndex(DOCS),
        tools=[ward_formulary_dose],
    )
    result = graph.invoke({"messages": [HumanMessage(QUESTION)], "images": []})
    assert [t.name for t in result["answer"].tool_calls] == ["ward_formulary_dose"]


def test_a_user_tool_named_like_a_default_is_refused(tmp_path: Path) -> None:
    @tool("search_literature")
    def my_search(query: str) -> str:
        """Another search."""
        return ""

    model = ScriptedChatModel(formulary_handler)
    with pytest.raises(ToolNameConflictError, match="search_literature"):
        Assistant(
            settings_for(tmp_path),
            text_model=model,
            image_model=model,
            index=KeywordIndex(DOCS),
            tools=[my_search],
        )
