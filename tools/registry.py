"""The tool registry: the tools the reasoner is offered unless told otherwise."""

from __future__ import annotations

from langchain_core.tools import BaseTool

from medgraph.errors import ConfigurationError
from medgraph.tools.calculators import CALCULATOR_TOOLS
from medgraph.tools.image import ANALYZE_IMAGE
from medgraph.tools.literature import EvidenceSearcher, build_search_literature_tool


class ToolNameConflictError(ConfigurationError, ValueError):
    """Two tools offered to the reasoner share a name (the model could not tell them apart)."""


def default_tools(index: EvidenceSearcher | None, *, retrieve_k: int = 5) -> list[BaseTool]:
    """``search_literature`` over ``index`` (when there is one) and the clinical calculators.

    ``analyze_image`` is not here: it is built per run over that run's attached images.
    """
    tools: list[BaseTool] = []
    if index is not None:
        tools.append(build_search_literature_tool(index, default_k=retrieve_k))
    return [*tools, *CALCULATOR_TOOLS]


def with_user_tools(defaults: list[BaseTool], user_tools: list[BaseTool]) -> list[BaseTool]:
    """``defaults`` followed by ``user_tools``; raise ToolNameConflictError on a repeated name
    (``analyze_image`` is taken too: each run adds it for its attached images)."""
    seen: set[str] = {ANALYZE_IMAGE}
    for tool in [*defaults, *user_tools]:
        if tool.name in seen:
            raise ToolNameConflictError(
                f"two tools are named {tool.name!r}; rename your tool (its `name`) so the model "
                "can tell them apart"
            )
        seen.add(tool.name)
    return [*defaults, *user_tools]
