"""``medgraph ask``, ``chat`` and ``demo`` as a user runs them: JSON shape, errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

QUESTION = "Do mitochondria play a role in programmed cell death in lace plant leaves?"


def run_cli(
    *args: str, cwd: Path, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medgraph", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        input=stdin,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "MEDGRAPH_HOME": str(cwd / "home"), **env},
    )


def test_ask_json_shape(tmp_path: Path, pubmedqa_corpus) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(
        "ask",
        QUESTION,
        "--index",
        str(pubmedqa_corpus.index_dir),
        "--model",
        "none",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"answer", "citations", "findings", "route", "verification", "engine"}
    assert data["engine"] == "extractive"
    assert data["route"] == ["triage", "retrieve", "write", "verify", "finalize"]
    assert data["citations"] and [c["n"] for c in data["citations"]] == list(
        range(1, len(data["citations"]) + 1)
    )
    for citation in data["citations"]:
        assert set(citation) >= {"n", "source_id", "title", "year", "quote", "passages"}
        assert f"[{citation['n']}]" in data["answer"]
        assert citation["passages"][0]["quote"] == citation["quote"]
        assert citation["passages"][0]["span"] == citation["span"]
    # one number per record: several quoted chunks of one abstract share its reference
    sources = [c["source_id"] for c in data["citations"]]
    assert len(sources) == len(set(sources))
    assert "21645374" in sources
    # no off-topic sentence: other studies that share words ("leaves", "death") are not quoted
    assert sources == ["21645374"]
    assert 0.0 <= data["verification"]["supported_fraction"] <= 1.0
    assert data["verification"]["relevant_fraction"] == 1.0  # the demo answer stays on topic
    assert all(s["relevant"] for s in data["verification"]["sentences"])
    assert isinstance(data["verification"]["sentences"], list)


def test_ask_continues_a_thread(tmp_path: Path, pubmedqa_corpus) -> None:  # type: ignore[no-untyped-def]
    index = str(pubmedqa_corpus.index_dir)
    first = run_cli("ask", QUESTION, "--index", index, "--model", "none", "--json", cwd=tmp_path)
    thread = json.loads(first.stdout)["thread_id"]
    second = run_cli(
        "ask",
        "What about perforation formation?",
        "--index",
        index,
        "--model",
        "none",
        "--thread",
        thread,
        "--json",
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["thread_id"] == thread


def _dicom_without_pixels(tmp_path: Path) -> Path:
    dataset = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    del dataset.PixelData
    path = tmp_path / "no-pixels.dcm"
    dataset.save_as(path)
    return path


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("empty-question", "question is empty"),
        ("missing-image", "missing.png"),
        ("dicom-without-pixels", "no-pixels.dcm"),
        ("unknown-thread", "no-such-thread"),
        ("unreadable-index", "empty-index"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    pubmedqa_corpus,
    case: str,
    needle: str,  # type: ignore[no-untyped-def]
) -> None:
    index = str(pubmedqa_corpus.index_dir)
    args = {
        "empty-question": ["ask", "  ", "--index", index],
        "missing-image": [
            "ask",
            QUESTION,
            "--index",
            index,
            "--image",
            str(tmp_path / "missing.png"),
        ],
        "dicom-without-pixels": [
            "ask",
            QUESTION,
            "--index",
            index,
            "--image",
            str(_dicom_without_pixels(tmp_path)),
        ],
        "unknown-thread": ["ask", QUESTION, "--index", index, "--thread", "no-such-thread"],
        "unreadable-index": ["ask", QUESTION, "--index", str(tmp_path / "empty-index")],
    }[case]
    result = run_cli(*args, "--model", "none", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("medgraph: error:")]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_chat_keeps_memory_and_attaches_images(
    tmp_path: Path,
    pubmedqa_corpus,
    data_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    image = data_dir / "images" / "nih-cxr14" / "00000001_000.png"
    script = f"{QUESTION}\n/image {image}\nWhat does this radiograph show?\n/quit\n"
    result = run_cli(
        "chat",
        "--index",
        str(pubmedqa_corpus.index_dir),
        "--model",
        "none",
        cwd=tmp_path,
        stdin=script,
    )
    assert result.returncode == 0, result.stderr
    assert "PMID:21645374" in result.stdout
    assert "attached 00000001_000.png as img-1" in result.stdout
    assert "Image img-1:" in result.stdout
    thread = result.stdout.rsplit("Thread: ", 1)[1].split()[0]
    resumed = run_cli(
        "chat",
        "--index",
        str(pubmedqa_corpus.index_dir),
        "--model",
        "none",
        "--thread",
        thread,
        cwd=tmp_path,
        stdin="/quit\n",
    )
    assert resumed.returncode == 0, resumed.stderr


def test_demo_indexes_and_answers_offline(tmp_path: Path, data_dir: Path) -> None:
    # A small MEDGRAPH_DATA keeps this quick; the demo reads pubmedqa/corpus.jsonl from it.
    small = tmp_path / "data" / "pubmedqa"
    small.mkdir(parents=True)
    lines = (data_dir / "pubmedqa" / "corpus.jsonl").read_text(encoding="utf-8").split("\n")
    (small / "corpus.jsonl").write_text("\n".join(lines[:25]) + "\n", encoding="utf-8")
    result = run_cli("demo", cwd=tmp_path, MEDGRAPH_DATA=str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    assert "Engine: extractive" in result.stdout
    assert "References:" in result.stdout and "PMID:" in result.stdout
    again = run_cli("demo", cwd=tmp_path, MEDGRAPH_DATA=str(tmp_path / "data"))
    assert "0 embedded" in again.stdout  # the second run re-embeds nothing


def test_demo_without_data_says_where_to_get_it(tmp_path: Path) -> None:
    result = run_cli(
        "demo",
        cwd=tmp_path,
        MEDGRAPH_DATA=str(tmp_path / "nowhere"),
        MEDGRAPH_DATA_CACHE=str(tmp_path / "empty-cache"),
        HTTPS_PROXY="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
    )
    assert result.returncode == 2
    assert "pubmedqa/corpus.jsonl" in result.stderr
    assert "github.com/pubmedqa/pubmedqa" in result.stderr
    assert not (tmp_path / "empty-cache").exists()
