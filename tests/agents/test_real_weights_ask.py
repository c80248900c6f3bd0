"""``medgraph ask --model <real checkpoint> --json`` end to end, from a fresh process.

The real Gemma 3 270M (base) reasons, may call ``search_literature``, writes and is verified. Its
answer may be poor; it must be well-formed, cite only records that were retrieved from the index,
and finish in bounded time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

pytestmark = [pytest.mark.real_weights, pytest.mark.slow, pytest.mark.timeout(900)]

QUESTION = "Do statins reduce mortality after an ischaemic stroke?"


def _corpus_texts(corpus: Path) -> dict[str, str]:
    texts: dict[str, str] = {}
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            # As the reader joins them: "LABEL: text" paragraphs.
            texts[str(record["pmid"])] = " ".join(
                f"{s['label']}: {s['text']}" if s.get("label") else s["text"]
                for s in record.get("sections", [])
            )
    return texts


def test_ask_with_the_real_model_answers_citing_only_indexed_records(
    tmp_path: Path,
    real_gemma: str,
    pubmedqa_corpus,  # type: ignore[no-untyped-def]
    data_dir: Path,
) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MEDGRAPH_HOME": str(tmp_path / "home"),
    }
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medgraph",
            "ask",
            QUESTION,
            "--model",
            real_gemma,
            "--index",
            str(pubmedqa_corpus.index_dir),
            "--json",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - started
    print(f"\n[real-weights ask] {seconds:.0f} s")
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data["engine"].startswith("transformers:"), data["engine"]
    assert data["kind"] in {"answer", "no_evidence", "clarify"}, data["kind"]
    assert data["answer"].strip()
    texts = _corpus_texts(data_dir / "pubmedqa" / "corpus.jsonl")
    numbers = {c["n"] for c in data["citations"]}
    for citation in data["citations"]:
        # A citation names an ingested record and quotes its text word for word.
        assert citation["source_id"] in texts, citation
        for passage in citation["passages"]:
            assert " ".join(passage["quote"].split()) in " ".join(
                texts[citation["source_id"]].split()
            ), passage
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", data["answer"])}
    assert markers <= numbers, (markers, numbers)
