"""Compiled graphs that carry a default run context (LangGraph's ``context=``).

A graph built by :func:`medgraph.build_assistant_graph` must run as it is — invoked directly,
served from ``langgraph.json``, or added as a node of a user's own graph whose runs pass no
``context`` — so the models, index and tools its nodes read travel with it. An explicit
``context=`` on a call still wins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

DEFAULT_CONTEXT_KEY = "medgraph_default_context"
"""Where a bound graph keeps its default context (its config's ``configurable``; a parent
graph's config never has this key, so it survives composition)."""


class ContextBoundGraph(CompiledStateGraph):  # type: ignore[type-arg]
    """A compiled state graph that runs with its bound context when a call passes none."""

    def _context(self, context: Any) -> Any:
        if context is not None:
            return context
        return (self.config or {}).get("configurable", {}).get(DEFAULT_CONTEXT_KEY)

    def stream(  # type: ignore[override]
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
        """:meth:`CompiledStateGraph.stream` with the bound context by default."""
        return super().stream(input, config, context=self._context(context), **kwargs)

    def astream(  # type: ignore[override]
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """:meth:`CompiledStateGraph.astream` with the bound context by default."""
        return super().astream(input, config, context=self._context(context), **kwargs)


def with_context(
    graph: CompiledStateGraph[Any, Any, Any, Any], context: Any
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """``graph`` running with ``context`` unless a call passes its own ``context=``."""
    attrs = {k: v for k, v in graph.__dict__.items() if k != "__orig_class__"}
    configurable = {**(graph.config or {}).get("configurable", {}), DEFAULT_CONTEXT_KEY: context}
    attrs["config"] = {**(graph.config or {}), "configurable": configurable}
    return ContextBoundGraph(**attrs)
