"""The engine interface: what ``MedGemmaChat`` asks of an inference backend."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from medgraph.agents.conversation import Conversation


@dataclass
class GenerationRequest:
    """One completion to produce: a conversation, an optional JSON schema, a token budget."""

    conversation: Conversation
    max_new_tokens: int
    json_schema: dict[str, Any] | None = None
    stop: Sequence[str] = ()
    deadline: float | None = None
    """Wall-clock time (``time.time()``) by which generation must end; ``None``: no limit."""

    def seconds_left(self) -> float | None:
        """Seconds until :attr:`deadline` (at least 0), or ``None`` without one."""
        return None if self.deadline is None else max(0.0, self.deadline - time.time())


@dataclass
class Completion:
    """An engine's answer to one request, with token counts where the backend reports them."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Engine(Protocol):
    """A backend that turns Gemma conversations into text."""

    name: str
    model_id: str

    @property
    def supports_images(self) -> bool:
        """Whether requests may carry images."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Complete every request (one batched call where the backend can)."""
        ...

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Yield the completion of one request piece by piece as it is produced."""
        ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` at the first occurrence of any stop string."""
    cut = len(text)
    for marker in stop:
        if marker:
            position = text.find(marker)
            if position != -1:
                cut = min(cut, position)
    return text[:cut]
