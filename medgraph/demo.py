"""The demo: index the PubMedQA literature and answer a sample question with citations.

The corpus comes from ``Settings.data`` (``MEDGRAPH_DATA``); when it is not there, it is fetched
once from the public PubMedQA repository into the user's data cache and checked by sha256
(:mod:`medgraph.datasets`). MedGemma answers when its weights are present locally; otherwise the
extractive engine does, and the output says which.
"""

from __future__ import annotations

from pathlib import Path

from medgraph.datasets import PUBMEDQA_CORPUS, data_cache_dir, ensure_pubmedqa
from medgraph.doctor import locate_weights
from medgraph.settings import Settings

DEMO_QUESTION = (
    "Do mitochondria play a role in remodelling lace plant leaves during programmed cell death?"
)


def find_corpus(settings: Settings, *, timeout: float = 20.0) -> Path:
    """The PubMedQA corpus file: in ``settings.data`` if there, else fetched into the data cache."""
    configured = settings.data / PUBMEDQA_CORPUS.relative_path
    if configured.is_file():
        return configured
    return ensure_pubmedqa(data_cache_dir(), timeout=timeout) / "corpus.jsonl"


def weights_available(settings: Settings) -> bool:
    """Whether both model roles' weights are on this machine (folder or Hub cache)."""
    return all(
        locate_weights(model)[0] in {"local folder", "in Hugging Face cache"}
        for model in (settings.models.image_model, settings.models.text_model)
    )
