"""``medgraph research`` as a user runs it on the shared PubMedQA index: the extractive report,
plan approval at the prompt (accept, edit, cancel, later + --resume), JSON, and bad input."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from medgraph.agents.extractive import EXTRACTIVE_LABEL
from medgraph.cli import app, main
from medgraph.graphs.safety import NOT_FOR_CLINICAL_USE
from tests.support import REPO_ROOT, IngestedCorpus, shared_data_dir

TOPIC = "Mitochondria and programmed cell death in lace plant leaves"
MARKER = re.compile(r"\[(\d+)\]")


def corpus_pmids() -> set[str]:
    path = shared_data_dir() / "pubmedqa" / "corpus.jsonl"
    lines = path.read_text(encoding="utf-8").split("\n")
    return {str(json.loads(line)["pmid"]) for line in lines if line.strip()}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDGRAPH_HOME", str(tmp_path / "home"))
    return tmp_path


def invoke(corpus: IngestedCorpus, *args: str, stdin: str | None = None) -> Result:
    arguments = [*args, "--index", str(corpus.index_dir), "--model", "none"]
    return CliRunner().invoke(app, ["research", *arguments], input=stdin)


def test_extractive_report_cites_only_ingested_records(
    home: Path, pubmedqa_corpus: IngestedCorpus
) -> None:
    out = home / "report.md"
    result = invoke(pubmedqa_corpus, TOPIC, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    markdown = out.read_text(encoding="utf-8")
    assert report["markdown"] == markdown and report["status"] == "done"
    assert report["engine"] == "extractive"
    assert EXTRACTIVE_LABEL in markdown and NOT_FOR_CLINICAL_USE in markdown
    assert [s["question"] for s in report["sections"]] == [p["question"] for p in report["plan"]]
    # every bibliography entry is an ingested PMID, listed once, numbered 1..n in citation order
    bibliography = report["bibliography"]
    assert bibliography and {e["source_id"] for e in bibliography} <= corpus_pmids()
    assert len({e["source_id"] for e in bibliography}) == len(bibliography)
    body, listed = markdown.split("## Bibliography")
    first_seen = list(dict.fromkeys(int(n) for n in MARKER.findall(body)))
    assert first_seen == [e["n"] for e in bibliography] == list(range(1, len(bibliography) + 1))
    for entry in bibliography:
        assert f"[{entry['n']}] " in listed and f"PMID: {entry['source_id']}" in listed
    # the lace-plant abstract answers this topic
    assert "21645374" in {e["source_id"] for e in bibliography}
    assert "researching:" in result.stderr and "Report written to" in result.stderr


def test_approve_accept_at_the_prompt(home: Path, pubmedqa_corpus: IngestedCorpus) -> None:
    result = invoke(pubmedqa_corpus, TOPIC, "--approve", "--json", stdin="\n")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "done"
    assert "Research plan for" in result.stderr and "Accept the plan" in result.stderr
    for number, item in enumerate(report["plan"], start=1):
        assert f"{number}. {item['question']}" in result.stderr


def test_approve_edit_at_the_prompt(home: Path, pubmedqa_corpus: IngestedCorpus) -> None:
    edited = [
        "Do mitochondria play a role in programmed cell death in lace plant leaves?",
        "Zebrafinch xylophony quasicrystals?",
    ]
    stdin = "e\n" + "".join(f"- {item}\n" for item in edited) + "\n"
    result = invoke(pubmedqa_corpus, TOPIC, "--approve", "--json", stdin=stdin)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [s["question"] for s in report["sections"]] == edited
    assert report["sections"][0]["status"] == "answered"


def test_approve_cancel_writes_nothing(home: Path, pubmedqa_corpus: IngestedCorpus) -> None:
    out = home / "report.md"
    result = invoke(pubmedqa_corpus, TOPIC, "--approve", "--out", str(out), stdin="c\n")
    assert result.exit_code == 0, result.output
    assert "cancelled" in result.stderr and not out.exists()
    assert "researching:" not in result.stderr


def run_main(argv: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as exited:
        main(argv)
    code = exited.value.code
    return code if isinstance(code, int) else 1


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["research", "   "], "", "the research topic is empty"),
        (["research", "--resume", "no-such-thread"], "", "no research run with thread id"),
        (["research", TOPIC, "--approve"], "e\n\n", "the edited plan has no sub-questions"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: list[str],
    stdin: str,
    message: str,
    home: Path,
    pubmedqa_corpus: IngestedCorpus,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [*args, "--index", str(pubmedqa_corpus.index_dir), "--model", "none"]
    assert run_main(argv, stdin, monkeypatch) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("medgraph: error: ") and message in errors[0]


def test_decide_later_then_resume_in_another_process(
    home: Path, pubmedqa_corpus: IngestedCorpus
) -> None:
    waiting = invoke(pubmedqa_corpus, TOPIC, "--approve", stdin="l\n")
    assert waiting.exit_code == 0, waiting.output
    found = re.search(r"--resume (\S+)", waiting.stderr)
    assert found, waiting.stderr
    env: dict[str, Any] = {**os.environ, "MEDGRAPH_HOME": str(home / "home")}
    resumed = subprocess.run(
        [sys.executable, "-m", "medgraph", "research", "--resume", found.group(1), "--json",
         "--index", str(pubmedqa_corpus.index_dir), "--model", "none"],
        cwd=REPO_ROOT, env=env, input="a\n", capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout)
    assert report["status"] == "done" and report["thread_id"] == found.group(1)
    assert {e["source_id"] for e in report["bibliography"]} <= corpus_pmids()
