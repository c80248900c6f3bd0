"""The built wheel installs the four top-level folders as medgraph sub-packages."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

pytestmark = pytest.mark.slow


SOURCE_ROOTS = {
    "medgraph": "medgraph",
    "medgraph.agents": "agents",
    "medgraph.tools": "tools",
    "medgraph.knowledge": "knowledge",
    "medgraph.graphs": "graphs",
}


def source_modules() -> list[str]:
    """Every module in the source folders, named as the installed package names it."""
    modules = []
    for package, folder in SOURCE_ROOTS.items():
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT / folder).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules.append(".".join((package, *parts)))
    return modules


def test_wheel_installs_and_imports_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(dist),
            str(REPO_ROOT),
        ],
        check=True,
        timeout=600,
    )
    wheels = list(dist.glob("medgraph-*.whl"))
    assert len(wheels) == 1
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheels[0])],
        check=True,
        timeout=300,
    )
    # Dependencies come from this test environment's site-packages; medgraph itself must come
    # from the wheel (the editable install adds no importable files there).
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    modules = source_modules()
    assert "medgraph.agents.engines.base" in modules
    script = (
        "import importlib, sys, medgraph\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(medgraph.__version__); print(sys.modules['medgraph.agents'].__file__)"
    )
    result = subprocess.run(
        [str(python), "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    version, agents_file = result.stdout.split()
    assert version == __import__("medgraph").__version__
    assert Path(agents_file).is_relative_to(fresh)
    assert not Path(agents_file).is_relative_to(REPO_ROOT)
