"""The Milvus store through every command a user runs, each from a fresh process.

``MEDGRAPH_KNOWLEDGE__STORE=milvus`` with no URI keeps a Milvus Lite ``.db`` inside the index
folder: ``ingest`` fills it with real MiniLM vectors, ``search`` and ``ask`` read it, and every
citation of the answer resolves to an ingested record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.knowledge.index_support import corpus_records, write_jsonl

QUESTION = "Do mitochondria play a role in programmed cell death in lace plant leaves?"


def _medgraph(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medgraph", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "MEDGRAPH_HOME": str(cwd / "home"),
            "MEDGRAPH_KNOWLEDGE__STORE": "milvus",
        },
    )


def test_ingest_search_and_ask_with_the_milvus_store(tmp_path: Path) -> None:
    records = corpus_records(40)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    index = tmp_path / "index"
    ingested = _medgraph("ingest", str(corpus), "--index", str(index), cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr
    assert "The index holds" in ingested.stdout and "of 40 documents" in ingested.stdout
    assert (index / "milvus.db").is_dir() and not (index / "chroma").exists()
    assert json.loads((index / "index.json").read_text())["store"] == "milvus"

    found = _medgraph(
        "search", "lace plant perforation", "--index", str(index), "--json", cwd=tmp_path
    )
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["document"]["source_id"] == "21645374"

    asked = _medgraph(
        "ask", QUESTION, "--index", str(index), "--model", "none", "--json", cwd=tmp_path
    )
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    pmids = {str(record["pmid"]) for record in records}
    assert answer["citations"] and {c["source_id"] for c in answer["citations"]} <= pmids
    assert "21645374" in {c["source_id"] for c in answer["citations"]}
    texts = {
        str(record["pmid"]): " ".join(s["text"] for s in record["sections"]) for record in records
    }
    for citation in answer["citations"]:
        assert f"[{citation['n']}]" in answer["answer"]
        assert citation["quote"] in texts[citation["source_id"]]
