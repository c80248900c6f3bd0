"""A fresh clone in an empty folder, with no MEDGRAPH_DATA and no ../shared/data beside it.

The repository's tracked files are copied to ``<tmp>/empty/medgraph``; its data comes only from a
local HTTP server standing in for the public hosts (``MEDGRAPH_DATA_MIRROR``) into an empty data
cache. The current interpreter runs the clone's own code: a ``sitecustomize`` maps the packages of
``pyproject.toml``'s ``package-dir`` to the clone's folders, as an editable install would, so no
new virtual environment is built. Bounded: the demo indexes 25 abstracts and the test subset is
a few seconds of work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.public_mirror import pubmedqa_sources, serve_files
from tests.support import REPO_ROOT

SITECUSTOMIZE = """
import importlib.util, os, sys, tomllib
from pathlib import Path

_root = Path(os.environ["MEDGRAPH_SOURCE_ROOT"])
_project = tomllib.loads((_root / "pyproject.toml").read_text())
_mapping = _project["tool"]["setuptools"]["package-dir"]


class _CloneFinder:
    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname not in _mapping:
            return None
        folder = _root / _mapping[fullname]
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


sys.meta_path.insert(0, _CloneFinder)
"""


def _copy_tracked_files(destination: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


@pytest.mark.slow
def test_fresh_clone_fetches_its_data_and_passes_a_smoke_run(
    data_dir: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "empty" / "medgraph"
    _copy_tracked_files(clone)
    bootstrap = tmp_path / "bootstrap"
    bootstrap.mkdir()
    (bootstrap / "sitecustomize.py").write_text(SITECUSTOMIZE)
    cache = tmp_path / "cache"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MEDGRAPH_")}
    env.update(
        MEDGRAPH_SOURCE_ROOT=str(clone),
        MEDGRAPH_DATA_CACHE=str(cache),
        PYTHONPATH=str(bootstrap),
        HOME=str(tmp_path / "home"),
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        # Anything that tries a public host goes to a closed port; the mirror is reached directly.
        HTTPS_PROXY="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1",
        no_proxy="127.0.0.1",
    )

    def run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    where = run(
        "-c",
        "import medgraph, medgraph.agents as a; print(medgraph.__file__, a.__file__)",
        timeout=60,
    )
    assert where.stdout.split() == [
        str(clone / "medgraph" / "__init__.py"),
        str(clone / "agents" / "__init__.py"),
    ], where.stderr

    with serve_files(pubmedqa_sources(data_dir), tmp_path / "served") as url:
        env["MEDGRAPH_DATA_MIRROR"] = url
        demo = run("-m", "medgraph", "demo", "--limit", "25", timeout=150)
        assert demo.returncode == 0, demo.stderr[-3000:]
        assert f"Literature: {cache / 'pubmedqa' / 'corpus.jsonl'}" in demo.stdout
        assert "References:" in demo.stdout and "PMID:" in demo.stdout
        subset = run(
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/agents/test_images.py",
            "tests/agents/test_extractive.py",
            "-k",
            "(dicom or ct_slice or encapsulated or cxr or lexical) and not minilm",
            timeout=150,
        )
    assert subset.returncode == 0, subset.stdout[-3000:] + subset.stderr[-2000:]
    assert " passed" in subset.stdout and "skipped" not in subset.stdout
    assert sorted(p.name for p in (cache / "pubmedqa").iterdir()) == ["corpus.jsonl", "dev.jsonl"]
    assert not (tmp_path / "empty" / "shared").exists()

    del env["MEDGRAPH_DATA_MIRROR"]
    shutil.rmtree(cache)
    offline = run("-m", "medgraph", "demo", "--limit", "25", timeout=60)
    assert offline.returncode == 2
    assert "github.com/pubmedqa/pubmedqa" in offline.stderr
