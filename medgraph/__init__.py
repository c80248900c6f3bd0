"""medgraph: MedGemma as a tool-calling medical reasoner with grounded, cited answers.

Public names are imported lazily so that ``import medgraph`` (and the CLI's start-up) stays cheap:
heavy dependencies such as torch load only when a model or an index is actually used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medgraph._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Settings": "medgraph.settings",
    "Assistant": "medgraph.assistant",
    "Answer": "medgraph.graphs.state",
    "build_assistant_graph": "medgraph.graphs.assistant",
    "AssistantContext": "medgraph.graphs.assistant",
    "default_tools": "medgraph.tools.registry",
    "build_research_graph": "medgraph.graphs.research",
    "Report": "medgraph.graphs.research",
    "MedgraphError": "medgraph.errors",
    "MedGemmaChat": "medgraph.agents.chat_model",
    "LiteratureIndex": "medgraph.knowledge.index",
}

if TYPE_CHECKING:
    from medgraph.agents.chat_model import MedGemmaChat
    from medgraph.assistant import Assistant
    from medgraph.errors import MedgraphError
    from medgraph.graphs.assistant import AssistantContext, build_assistant_graph
    from medgraph.graphs.research import Report, build_research_graph
    from medgraph.graphs.state import Answer
    from medgraph.knowledge.index import LiteratureIndex
    from medgraph.settings import Settings
    from medgraph.tools.registry import default_tools

__all__ = [
    "Answer",
    "Assistant",
    "AssistantContext",
    "LiteratureIndex",
    "MedGemmaChat",
    "MedgraphError",
    "Report",
    "Settings",
    "__version__",
    "build_assistant_graph",
    "build_research_graph",
    "default_tools",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
