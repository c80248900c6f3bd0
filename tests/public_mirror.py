"""A local HTTP server on 127.0.0.1 standing in for the public hosts medgraph fetches data from.

The PubMedQA source files it serves are rebuilt from the records of the test data folder (the
inverse of :func:`medgraph.datasets.pqal_corpus` and ``pqal_dev``), so they carry the real content
and pass the pinned sha256 check; tests corrupt them to see the check refuse them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from medgraph.datasets import PUBMEDQA_PQAL, PUBMEDQA_TEST_SPLIT


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def pubmedqa_sources(data: Path) -> dict[str, bytes]:
    """``ori_pqal.json`` and ``test_ground_truth.json`` (mirror paths) rebuilt from ``data``."""
    dev = {record["pmid"]: record for record in _jsonl(data / "pubmedqa" / "dev.jsonl")}
    raw: dict[str, dict[str, Any]] = {}
    test_split: dict[str, str] = {}
    for record in _jsonl(data / "pubmedqa" / "corpus.jsonl"):
        sections = list(record["sections"])
        item: dict[str, Any] = {}
        if sections and sections[-1]["label"] == "CONCLUSIONS":
            item["LONG_ANSWER"] = sections.pop()["text"]
        item["CONTEXTS"] = [section["text"] for section in sections]
        item["LABELS"] = [section["label"] for section in sections]
        item["MESHES"] = record["mesh"]
        item["YEAR"] = None if record["year"] is None else str(record["year"])
        question = dev.get(record["pmid"])
        if question is None:
            test_split[record["pmid"]] = "yes"  # the test half's labels play no part here
        else:
            item["QUESTION"] = question["question"]
            item["final_decision"] = question["final_decision"]
            item["LONG_ANSWER"] = question["long_answer"]
        raw[record["pmid"]] = item
    return {
        PUBMEDQA_PQAL.mirror_path: json.dumps(raw).encode("utf-8"),
        PUBMEDQA_TEST_SPLIT.mirror_path: json.dumps(test_split).encode("utf-8"),
    }


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_files(files: dict[str, bytes], root: Path) -> Iterator[str]:
    """Serve ``files`` (path -> bytes), written under ``root``, on 127.0.0.1; yields its URL."""
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
