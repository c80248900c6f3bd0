"""The Postgres checkpointer for real: a throwaway PostgreSQL cluster (``postgres_url``), threads
written by one assistant and read back by another and by a second process, a clarification
interrupt resumed through Postgres, and the state serializer's allow-list on that path too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres import PostgresSaver
from pydantic import BaseModel

from medgraph.assistant import Assistant
from medgraph.errors import ConfigurationError
from medgraph.graphs.checkpoint import open_checkpointer
from medgraph.graphs.state import Answer, Finding
from medgraph.settings import Settings
from tests.graphs.support import KeywordIndex, corpus_documents, dev_questions
from tests.support import REPO_ROOT

DOCS = corpus_documents(30)
QUESTION = dev_questions(1)[0]["question"]


class NotAllowed(BaseModel):
    """A model the state serializer must not revive from a checkpoint."""

    secret: int = 7


def postgres_settings(tmp_path: Path, url: str) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.models = settings.models.model_copy(update={"engine": "extractive"})
    settings.graph = settings.graph.model_copy(update={"checkpoint_url": url})
    return settings


def checkpoint_rows(url: str, thread: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_thread_is_written_to_postgres_and_read_by_another_assistant(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = postgres_settings(tmp_path, postgres_url)
    with Assistant(settings, index=KeywordIndex(DOCS)) as first:
        assert isinstance(first.checkpointer, PostgresSaver)
        answer = first.ask(QUESTION)
    thread = answer.thread_id
    assert thread and answer.citations
    assert checkpoint_rows(postgres_url, thread) > 0
    assert not settings.checkpoint_path.exists()  # nothing went to SQLite

    with Assistant(settings, index=KeywordIndex(DOCS)) as second:
        assert second.thread_exists(thread)
        state = second.graph.get_state({"configurable": {"thread_id": thread}}).values
        assert isinstance(state["answer"], Answer)  # revived as the state type, not a dict
        assert state["answer"].text == answer.text
        again = second.ask("And in older patients?", thread_id=thread, create=False)
        state = second.graph.get_state({"configurable": {"thread_id": thread}}).values
    assert again.thread_id == thread
    assert [m.text for m in state["messages"] if m.type == "human"] == [
        QUESTION,
        "And in older patients?",
    ]


READ_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from medgraph.assistant import Assistant
from medgraph.settings import Settings
from tests.graphs.test_checkpoint_postgres import DOCS, postgres_settings
from tests.graphs.support import KeywordIndex
settings = postgres_settings(Path({home!r}), {url!r})
with Assistant(settings, index=KeywordIndex(DOCS)) as assistant:
    thread = sys.argv[2]
    answer = assistant.ask(sys.argv[1], thread_id=thread, create=False)
    state = assistant.graph.get_state({{"configurable": {{"thread_id": thread}}}}).values
    humans = [m.text for m in state["messages"] if m.type == "human"]
    print(json.dumps({{"answer": answer.to_json_dict(), "humans": humans}}))
"""


def run_second_process(tmp_path: Path, url: str, *args: str) -> dict[str, Any]:
    script = tmp_path / "second.py"
    script.write_text(READ_SCRIPT.format(repo=str(REPO_ROOT), home=str(tmp_path / "p2"), url=url))
    result = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def test_thread_continues_in_a_second_process(tmp_path: Path, postgres_url: str) -> None:
    with Assistant(postgres_settings(tmp_path, postgres_url), index=KeywordIndex(DOCS)) as first:
        thread = first.ask(QUESTION).thread_id
    assert thread
    data = run_second_process(tmp_path, postgres_url, "What about older patients?", thread)
    assert data["humans"] == [QUESTION, "What about older patients?"]
    assert data["answer"]["thread_id"] == thread


def test_clarification_interrupt_resumes_through_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    with Assistant(postgres_settings(tmp_path, postgres_url), index=KeywordIndex(DOCS)) as first:
        asked = first.ask("is it safe?")
        assert asked.kind == "clarify" and asked.thread_id
    thread = asked.thread_id
    with Assistant(postgres_settings(tmp_path, postgres_url), index=KeywordIndex(DOCS)) as second:
        pending = second.pending_clarification(thread)
        assert pending is not None and pending.text == asked.text
    data = run_second_process(
        tmp_path, postgres_url, "mitochondria in programmed cell death", thread
    )
    answer = data["answer"]
    assert answer["kind"] == "answer" and answer["route"][:3] == ["triage", "clarify", "retrieve"]
    assert answer["citations"]
    assert {c["source_id"] for c in answer["citations"]} <= {d.source_id for d in DOCS}
    assert data["humans"] == ["is it safe?", "mitochondria in programmed cell death"]


def test_state_serializer_allow_list_applies_to_postgres(tmp_path: Path, postgres_url: str) -> None:
    config: Any = {"configurable": {"thread_id": "serde-check", "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    finding = Finding(image_id="img-1", text="clear lungs", model="m")
    checkpoint["channel_values"] = {"finding": finding, "intruder": NotAllowed()}
    checkpoint["channel_versions"] = {"finding": "1", "intruder": "1"}
    with open_checkpointer(tmp_path / "unused.sqlite", postgres_url) as saver:
        saver.put(config, checkpoint, {}, {"finding": "1", "intruder": "1"})
    with open_checkpointer(tmp_path / "unused.sqlite", postgres_url) as saver:
        stored = saver.get_tuple(config)
    assert stored is not None
    values = stored.checkpoint["channel_values"]
    assert values["finding"] == finding
    assert not isinstance(values["intruder"], NotAllowed)
    assert values["intruder"] == {"secret": 7}
    assert not (tmp_path / "unused.sqlite").exists()


def test_unreachable_postgres_is_a_clear_configuration_error(tmp_path: Path) -> None:
    url = "postgresql://medgraph:s3cret@127.0.0.1:9/medgraph"
    with (
        pytest.raises(ConfigurationError, match=r"medgraph:\*\*\*@127\.0\.0\.1:9") as raised,
        open_checkpointer(tmp_path / "x.sqlite", url),
    ):
        pass
    assert "s3cret" not in str(raised.value) and "CHECKPOINT_URL" in str(raised.value)
    with (
        pytest.raises(ConfigurationError, match="not a postgresql://"),
        open_checkpointer(tmp_path / "x.sqlite", "mysql://localhost/db"),
    ):
        pass


def test_missing_postgres_skips_locally_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests import postgres_support

    monkeypatch.setattr(postgres_support, "find_postgres_bin", lambda: None)
    with (
        pytest.raises(postgres_support.PostgresUnavailable, match="install-system-test-deps"),
        postgres_support.throwaway_postgres(),
    ):
        pass
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        postgres_support.skip_or_fail("no postgres")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no postgres"):
        postgres_support.skip_or_fail("no postgres")
