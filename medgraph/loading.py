"""One process-wide lock for first imports of the model libraries and for model loads.

The graph runs branches in parallel threads (``read_images`` beside ``retrieve``). The first
``import transformers`` (directly, or through sentence-transformers) in two threads at once leaves
one of them a half-initialised module (``ImportError: cannot import name 'AutoConfig'``). Every
place that imports those libraries for the first time or loads weights does it under
:data:`MODEL_LOAD_LOCK`; :func:`preload_model_libraries` does the imports up front where a model
engine is built.
"""

from __future__ import annotations

import importlib
import threading

MODEL_LOAD_LOCK = threading.RLock()
"""Held while importing transformers/sentence-transformers for the first time or loading weights."""


def preload_model_libraries() -> None:
    """Import transformers and the engine's grammar library now, in this thread, under the lock."""
    with MODEL_LOAD_LOCK:
        transformers = importlib.import_module("transformers")
        # The lazy module imports its submodules on attribute access: touch the ones medgraph uses.
        for name in ("AutoConfig", "AutoTokenizer", "AutoModelForCausalLM", "LogitsProcessor"):
            getattr(transformers, name)
        importlib.import_module("medgraph.agents.engines.transformers_engine")
