"""The demo: index the PubMedQA literature and answer a sample question with citations.

The corpus comes from ``MEDGRAPH_DATA`` (or ``../shared/data``); elsewhere it is built from the
public PubMedQA repository (https://github.com/pubmedqa/pubmedqa, ``data/ori_pqal.json``, MIT).
MedGemma answers when its weights are present locally; otherwise the extractive engine does, and
the output says which.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from medgraph.doctor import locate_weights
from medgraph.errors import ConfigurationError
from medgraph.settings import Settings

PUBMEDQA_URL = "https://raw.githubusercontent.com/pubmedqa/pubmedqa/master/data/ori_pqal.json"
PUBMEDQA_SOURCE = "https://github.com/pubmedqa/pubmedqa (data/ori_pqal.json, MIT licence)"
DEMO_QUESTION = (
    "Do mitochondria play a role in remodelling lace plant leaves during programmed cell death?"
)


def convert_pqal(raw: dict[str, dict[str, object]]) -> list[dict[str, object]]:
    """PubMedQA's ``ori_pqal.json`` as medgraph's corpus records (pmid, year, mesh, sections)."""
    records = []
    for pmid, item in raw.items():
        contexts = list(item.get("CONTEXTS", []))  # type: ignore[call-overload]
        labels = list(item.get("LABELS", []))  # type: ignore[call-overload]
        sections = [
            {"label": str(label), "text": str(text)}
            for label, text in zip(labels or [""] * len(contexts), contexts, strict=False)
        ]
        if item.get("LONG_ANSWER"):
            sections.append({"label": "CONCLUSIONS", "text": str(item["LONG_ANSWER"])})
        year = item.get("YEAR")
        records.append(
            {
                "pmid": str(pmid),
                "year": int(year) if isinstance(year, str | int) and str(year).isdigit() else None,
                "mesh": list(item.get("MESHES", [])),  # type: ignore[call-overload]
                "sections": sections,
            }
        )
    return records


def find_corpus(settings: Settings, download_to: Path, *, timeout: float = 20.0) -> Path:
    """The PubMedQA corpus file: the shared data folder, a previous download, or a new download."""
    shared = settings.data / "pubmedqa" / "corpus.jsonl"
    if shared.is_file():
        return shared
    target = download_to / "pubmedqa-corpus.jsonl"
    if target.is_file():
        return target
    try:
        with urllib.request.urlopen(PUBMEDQA_URL, timeout=timeout) as response:
            raw = json.loads(response.read().decode("utf-8"))
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as error:
        raise ConfigurationError(
            f"the PubMedQA corpus is not at {shared} and could not be downloaded ({error}). "
            f"Get it from {PUBMEDQA_SOURCE} or set MEDGRAPH_DATA to a folder holding "
            "pubmedqa/corpus.jsonl"
        ) from error
    download_to.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_text("".join(json.dumps(r) + "\n" for r in convert_pqal(raw)), encoding="utf-8")
    partial.replace(target)
    return target


def weights_available(settings: Settings) -> bool:
    """Whether both model roles' weights are on this machine (folder or Hub cache)."""
    return all(
        locate_weights(model)[0] in {"local folder", "in Hugging Face cache"}
        for model in (settings.models.image_model, settings.models.text_model)
    )
