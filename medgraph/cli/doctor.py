"""``medgraph doctor``: what this machine can run."""

from __future__ import annotations
