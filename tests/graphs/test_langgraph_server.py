"""medgraph's graphs served by a real ``langgraph dev`` (langgraph-cli[inmem]) on 127.0.0.1 and
driven with ``langgraph-sdk``: threads that checkpoint, waits and streams, state and history, the
clarify interrupt and the research plan approval resumed with ``Command(resume=...)``.

The server reads the project's ``langgraph.json`` and its settings from ``MEDGRAPH_*`` variables:
the extractive engine (``--model none``, no weights) over an index this module builds with
``python -m medgraph ingest``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from langgraph_sdk.schema import Command

from tests.support import REPO_ROOT, free_port, shared_data_dir

pytestmark = [pytest.mark.langgraph_server, pytest.mark.slow, pytest.mark.timeout(420)]

MS_PMIDS = {"18049437", "24793469"}  # the shared corpus's two multiple sclerosis abstracts
QUESTION = "Does tailored intervention increase mammography use among HMO women?"
START_SECONDS = 90


def _corpus(path: Path) -> set[str]:
    """The first 20 shared abstracts plus the multiple sclerosis ones, written to ``path``."""
    lines = (shared_data_dir() / "pubmedqa" / "corpus.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in lines.split("\n") if line.strip()]
    chosen = records[:20] + [r for r in records[20:] if str(r["pmid"]) in MS_PMIDS]
    assert {str(r["pmid"]) for r in chosen} >= MS_PMIDS
    path.write_text("".join(json.dumps(r) + "\n" for r in chosen), encoding="utf-8")
    return {str(r["pmid"]) for r in chosen}


def _wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ok", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        assert server.poll() is None, f"langgraph dev exited:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, (
            f"langgraph dev did not answer in {START_SECONDS} s:\n{log.read_text()[-4000:]}"
        )
        time.sleep(0.5)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, set[str], Path]]:
    """``langgraph dev`` serving the project's langgraph.json; yields (URL, indexed PMIDs, log)."""
    root = tmp_path_factory.mktemp("langgraph-server")
    pmids = _corpus(root / "corpus.jsonl")
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        MEDGRAPH_MODELS__ENGINE="extractive",
        MEDGRAPH_KNOWLEDGE__INDEX_DIR=str(root / "index"),
        MEDGRAPH_HOME=str(root / "home"),
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        PYTHONUNBUFFERED="1",  # the log is read while the server runs
    )
    ingest = [sys.executable, "-m", "medgraph", "ingest", str(root / "corpus.jsonl")]
    built = subprocess.run(
        [*ingest, "--index", str(root / "index")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    # langgraph.json names its graphs relative to the working folder, and the in-memory server
    # keeps its state in ./.langgraph_api: run it in a folder of its own holding the project's
    # langgraph.json as it is and the graphs package.
    workdir = root / "app"
    workdir.mkdir()
    shutil.copy(REPO_ROOT / "langgraph.json", workdir / "langgraph.json")
    (workdir / "graphs").symlink_to(REPO_ROOT / "graphs", target_is_directory=True)
    port = free_port()
    cli = Path(sys.executable).parent / "langgraph"
    command = [str(cli), "dev", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--no-browser", "--no-reload", "--config", "langgraph.json"]
    log = root / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, server, log)
        yield url, pmids, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@pytest.fixture
def client(served: tuple[str, set[str], Path]) -> SyncLangGraphClient:
    return get_sync_client(url=served[0], timeout=120)


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def assert_cited(answer: dict[str, Any], pmids: set[str]) -> None:
    assert answer["kind"] == "answer" and answer["engine"] == "extractive"
    cited = {c["source_id"] for c in answer["citations"]}
    assert cited and cited <= pmids
    assert "retrieve" in answer["route"]


def test_both_graphs_are_listed(client: SyncLangGraphClient) -> None:
    assert {a["graph_id"] for a in client.assistants.search()} >= {"assistant", "research"}


def test_thread_run_checkpoints_and_answers_from_the_literature(
    client: SyncLangGraphClient, served: tuple[str, set[str], Path]
) -> None:
    thread = client.threads.create()["thread_id"]
    result = client.runs.wait(thread, "assistant", input=ask(QUESTION))
    assert isinstance(result, dict) and "__error__" not in result, result
    assert_cited(result["answer"], served[1])
    assert result["evidence"]

    state = client.threads.get_state(thread)
    assert state["next"] == [] and state["values"]["answer"] == result["answer"]
    history = client.threads.get_history(thread)
    assert [h["next"] for h in history] == [
        [],
        ["finalize"],
        ["verify"],
        ["write"],
        ["retrieve"],
        ["triage"],
        ["__start__"],
    ]
    # the thread remembers the turn: the second question's run sees both human messages
    again = client.runs.wait(thread, "assistant", input=ask("Which interventions were compared?"))
    assert isinstance(again, dict)
    humans = [m["content"] for m in again["messages"] if m["type"] == "human"]
    assert humans == [QUESTION, "Which interventions were compared?"]


def test_stateless_run_uses_the_bound_index(
    client: SyncLangGraphClient, served: tuple[str, set[str], Path]
) -> None:
    # The server sends context {} when the caller gives none: the bound context must stay.
    result = client.runs.wait(None, "assistant", input=ask(QUESTION))
    assert isinstance(result, dict)
    assert result["answer"]["route"] == ["triage", "retrieve", "write", "verify", "finalize"]
    assert_cited(result["answer"], served[1])
    # A run's context fields go over the bound ones, the rest kept.
    narrow = client.runs.wait(
        None,
        "assistant",
        input=ask(QUESTION),
        context={"settings": {"retrieve_k": 1, "read_whole_records": False}},
    )
    assert isinstance(narrow, dict)
    assert len(narrow["evidence"]) == 1 and len(result["evidence"]) > 1
    assert_cited(narrow["answer"], served[1])
    # an unknown field fails the run; the server hides the message, its log has it
    with pytest.raises(Exception, match=r"^RunContextError"):
        client.runs.wait(None, "assistant", input=ask(QUESTION), context={"retrieve_k": 2})
    assert "run context field(s) 'retrieve_k' not in AssistantContext" in served[2].read_text()


def test_stream_updates_messages_and_custom_events(client: SyncLangGraphClient) -> None:
    thread = client.threads.create()["thread_id"]
    parts = list(
        client.runs.stream(
            thread,
            "assistant",
            input=ask(QUESTION),
            stream_mode=["updates", "messages", "custom"],
        )
    )
    events = [p.event for p in parts]
    assert "error" not in events, [p.data for p in parts if p.event == "error"]
    nodes = [next(iter(p.data)) for p in parts if p.event == "updates"]
    assert nodes == ["triage", "retrieve", "write", "verify", "finalize"]
    custom = [p.data["event"] for p in parts if p.event == "custom"]
    assert custom[:3] == ["triage", "retrieve", "retrieved"] and "verify" in custom
    (complete,) = [p.data for p in parts if p.event == "messages/complete"]
    final = [p.data for p in parts if p.event == "updates"][-1]["finalize"]["answer"]
    assert complete[-1]["type"] == "ai" and complete[-1]["content"] == final["text"]
    assert client.threads.get_state(thread)["values"]["answer"]["text"] == final["text"]


def test_clarify_interrupt_resumed_with_command(
    client: SyncLangGraphClient, served: tuple[str, set[str], Path]
) -> None:
    thread = client.threads.create()["thread_id"]
    waiting = client.runs.wait(thread, "assistant", input=ask("MS treatment?"))
    assert isinstance(waiting, dict) and "answer" not in waiting
    (pending,) = waiting["__interrupt__"]
    assert pending["value"]["type"] == "clarify"
    assert "multiple sclerosis" in pending["value"]["question"]
    state = client.threads.get_state(thread)
    assert state["next"] == ["clarify"]
    assert [i["id"] for i in state["interrupts"]] == [pending["id"]]

    resumed = client.runs.wait(thread, "assistant", command=Command(resume="multiple sclerosis"))
    assert isinstance(resumed, dict)
    answer = resumed["answer"]
    assert answer["route"][:2] == ["triage", "clarify"]
    assert_cited(answer, served[1])
    assert {c["source_id"] for c in answer["citations"]} <= MS_PMIDS
    assert client.threads.get_state(thread)["next"] == []


def test_research_plan_approval_interrupt(
    client: SyncLangGraphClient, served: tuple[str, set[str], Path]
) -> None:
    thread = client.threads.create()["thread_id"]
    topic = {"topic": "Mammography screening in HMO women", "approve_plan": True}
    waiting = client.runs.wait(thread, "research", input=topic)
    assert isinstance(waiting, dict) and "report" not in waiting
    (pending,) = waiting["__interrupt__"]
    planned = [item["question"] for item in pending["value"]["plan"]]
    assert planned and client.threads.get_state(thread)["next"]

    edited = ["Can tailored interventions increase mammography use?"]
    done = client.runs.wait(thread, "research", command=Command(resume=edited))
    assert isinstance(done, dict)
    report = done["report"]
    assert report["status"] == "done" and report["engine"] == "extractive"
    assert [s["question"] for s in report["sections"]] == edited
    assert report["bibliography"]
    assert {e["source_id"] for e in report["bibliography"]} <= served[1]
