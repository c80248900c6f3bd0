"""Run the ``medgraph`` command in a subprocess, as a user would, with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_cli(
    args: Sequence[str], *, env: Mapping[str, str] = {}, home: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m medgraph ARGS`` in ``home`` (also ``MEDGRAPH_HOME``), offline, with ``env``."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MEDGRAPH_") or key == "MEDGRAPH_DATA"
    }
    base.update(
        {
            "MEDGRAPH_HOME": str(home / "medgraph-home"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "COLUMNS": "200",
        }
    )
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "medgraph", *args],
        cwd=home,
        env=base,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
