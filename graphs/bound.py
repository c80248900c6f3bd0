"""Compiled graphs that carry a default run context (LangGraph's ``context=``).

A graph built by :func:`medgraph.build_assistant_graph` must run as it is — invoked directly,
served from ``langgraph.json``, or added as a node of a user's own graph whose runs pass no
``context`` — so the models, index and tools its nodes read travel with it.

The default lives on the graph object (kept by LangGraph's ``copy()``/``with_config()``), never in
``config["configurable"]``: a LangGraph server copies every configurable value into checkpoint
metadata, and models, indexes and locks cannot be serialised. A run's context resolves as:
none or ``{}`` (what a LangGraph server sends when the caller gave none): the bound context; a
mapping: its fields over the bound ones (a settings section given as a mapping updates only the
keys it names); a context object: that object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ValidationError

from medgraph.errors import ConfigurationError


class RunContextError(ConfigurationError):
    """A run's ``context`` names a field the graph's context does not have, or a bad value."""


class ContextBoundGraph(CompiledStateGraph):  # type: ignore[type-arg]
    """A compiled state graph whose runs start from its bound context."""

    def __init__(self, *, bound_context: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bound_context = bound_context

    def _context(self, context: Any) -> Any:
        if context is None:
            return self.bound_context
        if isinstance(context, Mapping) and dataclasses.is_dataclass(self.bound_context):
            return merge_context(self.bound_context, context)
        return context

    def stream(  # type: ignore[override]
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
        """:meth:`CompiledStateGraph.stream` over the bound context (see the module doc)."""
        return super().stream(input, config, context=self._context(context), **kwargs)

    def astream(  # type: ignore[override]
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """:meth:`CompiledStateGraph.astream` over the bound context (see the module doc)."""
        return super().astream(input, config, context=self._context(context), **kwargs)


def merge_context(bound: Any, fields: Mapping[str, Any]) -> Any:
    """``bound`` (a dataclass context) with ``fields`` over it; ``{}`` returns ``bound`` itself.

    A field whose bound value is a pydantic model and whose new value is a mapping is updated key
    by key and validated again; other values replace the bound ones.
    """
    if not fields:
        return bound
    settable = {f.name for f in dataclasses.fields(bound) if f.init}
    unknown = sorted(set(fields) - settable)
    if unknown:
        raise RunContextError(
            f"run context field(s) {', '.join(map(repr, unknown))} not in "
            f"{type(bound).__name__}; use only {', '.join(sorted(settable))}"
        )
    changes: dict[str, Any] = {}
    for name, value in fields.items():
        current = getattr(bound, name)
        if isinstance(current, BaseModel) and isinstance(value, Mapping):
            try:
                value = type(current).model_validate({**current.model_dump(), **value})
            except ValidationError as error:
                raise RunContextError(
                    f"run context field {name!r} is invalid: {error.errors()[0]['msg']} "
                    f"(at {error.errors()[0]['loc']}); fix the value or leave the key out"
                ) from error
        changes[name] = value
    return dataclasses.replace(bound, **changes)


def with_context(
    graph: CompiledStateGraph[Any, Any, Any, Any], context: Any
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """``graph`` whose runs start from ``context`` (see the module doc for how a run's own
    ``context=`` combines with it)."""
    attrs = {k: v for k, v in graph.__dict__.items() if k != "__orig_class__"}
    attrs["bound_context"] = context
    return ContextBoundGraph(**attrs)
