"""Where medgraph keeps what it builds or fetches once per machine."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(name: str, override_env: str) -> Path:
    """``$override_env`` if set, else ``$XDG_CACHE_HOME/medgraph/<name>`` (``~/.cache`` by
    default)."""
    configured = os.environ.get(override_env)
    if configured:
        return Path(configured).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "medgraph" / name
