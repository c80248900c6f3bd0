"""``medgraph ingest / search / eval retrieval``: exit codes and one-line errors.

Runs the real entry point (``medgraph.cli.main``), which maps every MedgraphError to one line on
standard error and exit status 2. Retrieval quality on the real corpus is tested in
test_corpus_retrieval.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgraph.cli import main
from tests.knowledge.index_support import corpus_records, write_jsonl


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``medgraph ARGS``; returns (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), captured.out, captured.err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("medgraph: error: ")
    return lines[0]


def test_search_without_an_index_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["search", "aspirin", "--index", str(tmp_path / "none")], capsys)
    assert code == 2 and out == ""
    line = _one_error_line(err)
    assert str(tmp_path / "none") in line and "medgraph ingest" in line


def test_bad_mode_k_and_format_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = str(tmp_path / "index")
    code, _, err = run_cli(["search", "aspirin", "--index", index, "--mode", "fuzzy"], capsys)
    assert code == 2 and "--mode 'fuzzy'" in _one_error_line(err)
    code, _, err = run_cli(["search", "aspirin", "--index", index, "-k", "0"], capsys)
    assert code == 2 and "-k" in _one_error_line(err)
    questions = write_jsonl(tmp_path / "q.jsonl", [{"question": "q", "pmid": "1"}])
    code, _, err = run_cli(
        ["eval", "retrieval", "--questions", str(questions), "--index", index, "--mode", "best"],
        capsys,
    )
    assert code == 2 and "all" in _one_error_line(err)
    code, _, err = run_cli(["ingest", str(questions), "--index", index, "--format", "docx"], capsys)
    assert code == 2 and "--format 'docx'" in _one_error_line(err)
    assert not Path(index).exists()


def test_malformed_questions_file_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "ok?", "pmid": "1"}) + "\n" + '{"question": 3}\n')
    code, _, err = run_cli(
        ["eval", "retrieval", "--questions", str(questions), "--index", str(tmp_path)], capsys
    )
    line = _one_error_line(err)
    assert code == 2 and "q.jsonl line 2" in line and "'question'" in line
    code, _, err = run_cli(
        ["eval", "retrieval", "--questions", str(tmp_path / "absent.jsonl")], capsys
    )
    assert code == 2 and "does not exist" in _one_error_line(err)


def test_ingest_exit_codes_and_failure_listing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_jsonl(tmp_path / "in" / "good.jsonl", corpus_records(3))
    bad = tmp_path / "in" / "bad.jsonl"
    bad.write_text('{"pmid": "x1", "sections": []}\n')
    index = str(tmp_path / "index")

    code, out, err = run_cli(["ingest", str(good), str(bad), "--index", index, "--quiet"], capsys)
    assert code == 1 and out == ""
    assert f"medgraph: cannot read {bad}: line 1:" in err
    assert "1 input(s) could not be read" in err

    code, out, err = run_cli(["ingest", str(good), "--index", index], capsys)
    assert code == 0
    assert "Read 3 documents from 1 files" in out and "0 new" in out and "3 unchanged" in out

    code, out, _ = run_cli(["search", "patients", "--index", index, "-k", "2", "--json"], capsys)
    assert code == 0
    hits = json.loads(out)
    assert len(hits) == 2 and [hit["rank"] for hit in hits] == [1, 2]
    pmids = {record["pmid"] for record in corpus_records(3)}
    assert all(hit["document"]["source_id"] in pmids for hit in hits)
    assert hits[0]["citation"].startswith("[1] ") and "PMID:" in hits[0]["citation"]


def test_ray_ingest_without_a_chroma_server_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDGRAPH_KNOWLEDGE__CHROMA_URL", raising=False)
    corpus = write_jsonl(tmp_path / "a.jsonl", corpus_records(2))
    index = str(tmp_path / "index")
    code, _, err = run_cli(["ingest", str(corpus), "--index", index, "--ray", "local"], capsys)
    assert code == 2 and "chroma_url" in _one_error_line(err)
    code, _, err = run_cli(
        ["ingest", str(corpus), "--index", index, "--ray", "local", "--prune"], capsys
    )
    assert code == 2 and "--prune" in _one_error_line(err)
