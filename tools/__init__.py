"""medgraph.tools: the LangChain tools the MedGemma reasoner may call.

``search_literature`` (over a literature index), ``analyze_image`` (over the images attached to a
conversation, by id only) and the clinical calculators. Names are imported lazily, so
``import medgraph.tools`` loads neither torch nor chromadb nor langchain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medgraph._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "EVIDENCE_PREAMBLE": "medgraph.tools.literature",
    "EvidenceSearcher": "medgraph.tools.literature",
    "build_search_literature_tool": "medgraph.tools.literature",
    "render_evidence": "medgraph.tools.literature",
    "DEFAULT_FOCUS": "medgraph.tools.image",
    "ImageDescriber": "medgraph.tools.image",
    "build_analyze_image_tool": "medgraph.tools.image",
    "looks_like_file_reference": "medgraph.tools.image",
    "CALCULATOR_TOOLS": "medgraph.tools.calculators",
    "ToolNameConflictError": "medgraph.tools.registry",
    "default_tools": "medgraph.tools.registry",
}

if TYPE_CHECKING:
    from medgraph.tools.calculators import CALCULATOR_TOOLS
    from medgraph.tools.image import (
        DEFAULT_FOCUS,
        ImageDescriber,
        build_analyze_image_tool,
        looks_like_file_reference,
    )
    from medgraph.tools.literature import (
        EVIDENCE_PREAMBLE,
        EvidenceSearcher,
        build_search_literature_tool,
        render_evidence,
    )
    from medgraph.tools.registry import ToolNameConflictError, default_tools

__all__ = [
    "CALCULATOR_TOOLS",
    "DEFAULT_FOCUS",
    "EVIDENCE_PREAMBLE",
    "EvidenceSearcher",
    "ImageDescriber",
    "ToolNameConflictError",
    "build_analyze_image_tool",
    "build_search_literature_tool",
    "default_tools",
    "looks_like_file_reference",
    "render_evidence",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
