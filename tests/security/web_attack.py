"""Raw Gradio protocol calls against a served page, as a hostile client would send them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx


def chat_dependency(config: dict[str, Any]) -> tuple[int, dict[str, Any], int]:
    """(fn_index, dependency, textbox id) of the page's chat function (the one with history)."""
    (textbox,) = [c["id"] for c in config["components"] if c["type"] == "multimodaltextbox"]
    for fn_index, dependency in enumerate(config["dependencies"]):
        if textbox in dependency["inputs"] and len(dependency["inputs"]) > 1:
            return fn_index, dependency, textbox
    raise AssertionError("the page has no chat function taking the textbox")


def send_file_path(client: httpx.Client, path: Path) -> list[dict[str, Any]]:
    """Call the chat function with a FileData naming ``path`` (never uploaded); its SSE events."""
    config = client.get("/config").json()
    fn_index, dependency, textbox = chat_dependency(config)
    forged = {"path": str(path), "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
    data = [
        {"text": "what does this show?", "files": [forged]} if component == textbox else None
        for component in dependency["inputs"]
    ]
    session = uuid.uuid4().hex[:12]
    joined = client.post(
        "/gradio_api/queue/join",
        json={
            "data": data,
            "fn_index": fn_index,
            "session_hash": session,
            "event_data": None,
            "trigger_id": dependency["targets"][0][0],
        },
    )
    joined.raise_for_status()
    events = []
    with client.stream("GET", f"/gradio_api/queue/data?session_hash={session}") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def files_holding(folder: Path, marker: bytes) -> list[Path]:
    """Files under ``folder`` whose bytes contain ``marker``."""
    if not folder.exists():
        return []
    return [p for p in folder.rglob("*") if p.is_file() and marker in p.read_bytes()]
