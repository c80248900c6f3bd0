"""Helpers shared by test modules (not fixtures)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """MEDGRAPH_DATA if set, else ``../shared/data`` beside the repository; fails if absent."""
    configured = os.environ.get("MEDGRAPH_DATA")
    folder = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    if not (folder / "pubmedqa" / "corpus.jsonl").is_file():
        raise RuntimeError(
            f"shared test data not found at {folder}; set MEDGRAPH_DATA to the folder that holds "
            "pubmedqa/corpus.jsonl"
        )
    return folder


@dataclass(frozen=True)
class IngestedCorpus:
    """The shared PubMedQA corpus ingested once per test session."""

    index_dir: Path
    seconds: float
    summary: str
