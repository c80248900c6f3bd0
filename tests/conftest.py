"""Shared fixtures: offline mode, the shared data folder, tiny random-weight Gemma 3 checkpoints."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from pathlib import Path

import pytest

from tests.support import shared_data_dir
from tests.tiny_gemma import build_multimodal, build_text_only


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real datasets (MEDGRAPH_DATA, else ../shared/data beside the checkout)."""
    return shared_data_dir()


@pytest.fixture(scope="session")
def tiny_multimodal(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a tiny random Gemma3ForConditionalGeneration checkpoint (MedGemma 4B's shape)."""
    return str(build_multimodal(tmp_path_factory.mktemp("tiny-medgemma-4b")))


@pytest.fixture(scope="session")
def tiny_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a tiny random Gemma3ForCausalLM checkpoint (MedGemma 27B text's shape)."""
    return str(build_text_only(tmp_path_factory.mktemp("tiny-medgemma-27b-text")))
