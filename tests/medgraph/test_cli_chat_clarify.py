"""Clarifying questions at the command line: ``medgraph chat`` driven through standard input shows
the question and takes the next line as the answer; ``medgraph ask`` prints the question with how to
continue, and ``--thread`` resumes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import shared_data_dir

MS_PMIDS = {"18049437", "24793469"}  # the shared corpus's two multiple sclerosis abstracts


def run_cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medgraph", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        input=stdin,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "MEDGRAPH_HOME": str(cwd / "home")},
    )


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """An index of 22 shared abstracts (two about multiple sclerosis), built by ``ingest``."""
    root = tmp_path_factory.mktemp("clarify-cli")
    lines = (shared_data_dir() / "pubmedqa" / "corpus.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in lines.split("\n") if line.strip()]
    chosen = records[:20] + [r for r in records if r["pmid"] in MS_PMIDS]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in chosen), encoding="utf-8")
    result = run_cli("ingest", str(corpus), "--index", str(root / "index"), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "index", {str(r["pmid"]) for r in chosen}


def test_chat_shows_the_clarifying_question_then_a_cited_answer(
    tmp_path: Path, small_index: tuple[Path, set[str]]
) -> None:
    index, ingested = small_index
    result = run_cli(
        "chat",
        "--index",
        str(index),
        "--model",
        "none",
        cwd=tmp_path,
        stdin="MS treatment?\nmultiple sclerosis\n/quit\n",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    question_at = out.index('Clarifying question: By "MS", do you mean multiple sclerosis')
    assert "(answer the question above to continue)" in out
    answer_part = out[question_at:]
    assert "References:" in answer_part and "[1]" in answer_part
    cited = {pmid for pmid in ingested if f"PMID:{pmid}" in answer_part.replace(" ", "")}
    assert cited & MS_PMIDS
    assert "Verified:" in answer_part
    # One thread for the question and its clarification.
    assert out.count("Thread: ") == 1


def test_ask_prints_the_question_and_how_to_continue(
    tmp_path: Path, small_index: tuple[Path, set[str]]
) -> None:
    index = str(small_index[0])
    text = run_cli("ask", "is it safe?", "--index", index, "--model", "none", cwd=tmp_path)
    assert text.returncode == 0, text.stderr[-3000:]
    assert "Clarifying question: Which medicine or treatment" in text.stdout
    assert 'medgraph ask "YOUR ANSWER" --thread ' in text.stdout
    assert "References:" not in text.stdout

    first = run_cli(
        "ask", "MS treatment?", "--index", index, "--model", "none", "--json", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr[-3000:]
    asked = json.loads(first.stdout)
    assert asked["kind"] == "clarify" and "multiple sclerosis" in asked["answer"]
    assert asked["citations"] == [] and asked["thread_id"]
    second = run_cli(
        "ask",
        "multiple sclerosis",
        "--index",
        index,
        "--model",
        "none",
        "--thread",
        asked["thread_id"],
        "--json",
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    answered = json.loads(second.stdout)
    assert answered["kind"] == "answer" and answered["thread_id"] == asked["thread_id"]
    assert answered["route"][:3] == ["triage", "clarify", "retrieve"]
    cited = {c["source_id"] for c in answered["citations"]}
    assert cited & MS_PMIDS and cited <= small_index[1]
