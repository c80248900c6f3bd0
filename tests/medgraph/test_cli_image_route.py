"""The image route from a fresh process: parallel graph branches doing their first imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT


def test_ask_with_an_image_and_transformers_models_answers_from_a_fresh_process(
    tmp_path: Path,
    tiny_multimodal: str,
    pubmedqa_corpus,  # type: ignore[no-untyped-def]
    data_dir: Path,
) -> None:
    # read_images (image model) and retrieve (sentence-transformers) run in parallel threads and
    # both import transformers for the first time: nothing is imported before the CLI starts.
    image = data_dir / "images" / "nih-cxr14" / "00000001_000.png"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MEDGRAPH_HOME": str(tmp_path / "home"),
        # Short prompts and replies: the tiny tokenizer spends bytes on medical text.
        "MEDGRAPH_GRAPH__RETRIEVE_K": "1",
        "MEDGRAPH_GRAPH__MAX_TOOL_STEPS": "0",
        "MEDGRAPH_MODELS__MAX_NEW_TOKENS": "16",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medgraph",
            "ask",
            "Is there cardiomegaly on this chest X-ray?",
            "--image",
            str(image),
            "--image-model",
            tiny_multimodal,
            "--text-model",
            tiny_multimodal,
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
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ImportError" not in result.stderr
    data = json.loads(result.stdout)
    assert "read_images" in data["route"] and "retrieve" in data["route"]
    assert data["engine"].startswith("transformers:")
    assert data["answer"].strip()
