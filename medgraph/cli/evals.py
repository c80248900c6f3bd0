"""``medgraph eval pubmedqa``, ``eval mcq`` and ``eval citations`` (registered on ``eval_app``)."""

from __future__ import annotations
