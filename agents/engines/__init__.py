"""Inference engines behind :class:`~medgraph.agents.chat_model.MedGemmaChat`."""

from medgraph.agents.engines.base import Completion, Engine, GenerationRequest

__all__ = ["Completion", "Engine", "GenerationRequest"]
