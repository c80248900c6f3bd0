"""``medgraph research``: a cited markdown report from a plan of sub-questions."""

from __future__ import annotations
