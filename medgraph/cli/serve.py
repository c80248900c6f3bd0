"""``medgraph serve``: the OpenAI-compatible API and the web chat page."""

from __future__ import annotations
