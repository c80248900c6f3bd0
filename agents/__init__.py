"""MedGemma as a LangChain chat model: engines, the tool-call protocol, image loading."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medgraph.agents.chat_model import MedGemmaChat

__all__ = ["MedGemmaChat"]


def __getattr__(name: str) -> Any:
    if name == "MedGemmaChat":
        value = importlib.import_module("medgraph.agents.chat_model").MedGemmaChat
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medgraph.agents' has no attribute {name!r}")
