"""Import the bench scripts (bench/ is a folder of scripts, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.support import REPO_ROOT


def load_bench(name: str) -> ModuleType:
    """The module ``bench/<name>.py`` (imported once per session)."""
    key = f"medgraph_bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, REPO_ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module
