"""MedGemma as a LangChain chat model: engines, the tool-call protocol, image loading."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medgraph._lazy import lazy_exports

if TYPE_CHECKING:
    from medgraph.agents.chat_model import MedGemmaChat

__all__ = ["MedGemmaChat"]


__getattr__, __dir__ = lazy_exports(__name__, {"MedGemmaChat": "medgraph.agents.chat_model"})
