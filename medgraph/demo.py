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


def first_records(corpus: Path, limit: int, target: Path) -> Path:
    """Write the first ``limit`` records of a JSON-lines corpus to ``target`` and return it."""
    kept: list[str] = []
    with corpus.open(encoding="utf-8", newline="\n") as lines:
        for line in lines:
            if line.strip():
                kept.append(line if line.endswith("\n") else line + "\n")
            if len(kept) == limit:
                break
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(kept), encoding="utf-8")
    return target


def weights_available(settings: Settings) -> bool:
    """Whether both model roles' weights are on this machine (folder or Hub cache)."""
    return all(
        locate_weights(model)[0] in {"local folder", "in Hugging Face cache"}
        for model in (settings.models.image_model, settings.models.text_model)
    )
