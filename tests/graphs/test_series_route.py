"""Studies through the assistant graph with scripted models: a series as one ordered multi-image
turn, views, prior/current comparison, analyze_image by study/series/slice id, grounding, PHI."""

from __future__ import annotations

import base64
import io
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import AIMessage, ToolMessage
from PIL import Image

from medgraph.agents.images import load_image
from medgraph.agents.series import load_study
from medgraph.assistant import Assistant
from medgraph.settings import Settings
from tests.dicom_series import PlantedPHI, write_cxr_pair, write_radiograph, write_series
from tests.graphs.support import KeywordIndex, corpus_documents
from tests.graphs.test_assistant_graph import grounded_handler
from tests.scripted import Call, ScriptedChatModel
from tests.support import shared_data_dir

CXR = sorted((shared_data_dir() / "images" / "nih-cxr14").glob("*.png"))
FINDING = "Dense round focus near SLICE 40, likely bone; lungs clear."


def settings_for(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.models = settings.models.model_copy(update={"engine": "transformers"})
    return settings


def image_blocks(call: Call) -> list[dict[str, Any]]:
    return [
        block
        for message in call.messages
        if isinstance(message.content, list)
        for block in message.content
        if isinstance(block, dict) and block.get("type") == "image"
    ]


def text_blocks(call: Call) -> list[str]:
    return [
        str(block.get("text", ""))
        for message in call.messages
        if isinstance(message.content, list)
        for block in message.content
        if isinstance(block, dict) and block.get("type") == "text"
    ]


def pixels(block: dict[str, Any]) -> bytes:
    data = base64.b64decode(block["url"].split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).tobytes()


def reader(call: Call) -> AIMessage | dict[str, Any]:
    if image_blocks(call):
        return AIMessage(FINDING)
    return grounded_handler(call)


@pytest.fixture
def index() -> KeywordIndex:
    return KeywordIndex(corpus_documents(60))


def test_series_goes_as_one_ordered_multi_image_turn(tmp_path: Path, index: KeywordIndex) -> None:
    series_dir = write_series(tmp_path / "ct", slices=120, rows=32, columns=32, missing=[30])
    model = ScriptedChatModel(reader)
    with Assistant(settings_for(tmp_path), text_model=model, image_model=model, index=index) as a:
        answer = a.ask("What does this CT show?", images=[series_dir])
        state = a.graph.get_state({"configurable": {"thread_id": answer.thread_id}}).values
    image_calls = [c for c in model.calls if image_blocks(c)]
    assert len(image_calls) == 1  # one turn for the whole series
    blocks = image_blocks(image_calls[0])
    assert len(blocks) == 85
    (expected,) = load_study(series_dir)
    assert [pixels(b) for b in blocks] == [
        np.asarray(i).tobytes() for i in expected.series[0].images
    ]
    texts = text_blocks(image_calls[0])
    assert [t for t in texts if t.startswith("SLICE ")] == [f"SLICE {n}" for n in range(1, 86)]
    assert "85 of its 119 slices" in texts[0] and "2.5 mm apart" in texts[0]
    assert "-135 to 215 HU" in texts[0] and texts[-1] == "Question: What does this CT show?"
    (finding,) = answer.findings
    assert finding.kind == "series" and finding.image_id == "series-1"
    assert finding.scope.startswith("series-1 (CT chest axial series, 119 slices (85 shown)")
    assert "slices 1-119 of 119, shown as SLICE 1-85" in finding.scope
    # grounded like single-image findings: the finding feeds a literature search
    assert any("Dense round focus" in q for q in index.queries)
    assert answer.citations
    (ref,) = state["images"]
    assert ref.kind == "series" and len(ref.slice_numbers) == 85 and ref.slice_count == 119
    assert any("missing between slice 30 and 31" in w for w in ref.warnings)


def test_two_dated_studies_are_compared_prior_first(tmp_path: Path, index: KeywordIndex) -> None:
    current, prior = write_cxr_pair(tmp_path / "pair", CXR[:2])
    model = ScriptedChatModel(reader)
    with Assistant(settings_for(tmp_path), text_model=model, image_model=model, index=index) as a:
        answer = a.ask("Has the chest changed since the last film?", images=[current, prior])
    (call,) = [c for c in model.calls if image_blocks(c)]
    shown = [pixels(b) for b in image_blocks(call)]
    assert shown == [np.asarray(load_image(p).image).tobytes() for p in (prior, current)]
    texts = text_blocks(call)
    assert texts.index("PRIOR STUDY") < texts.index("CURRENT STUDY")
    assert "PRIOR study" in texts[0]
    joined = " ".join(texts)
    assert not re.search(r"20(23|24)", joined)  # relative order only: no dates
    (finding,) = answer.findings
    assert finding.kind == "comparison"
    assert finding.scope == "comparison: prior img-2 with current img-1"


def test_different_patients_are_views_not_a_comparison(tmp_path: Path, index: KeywordIndex) -> None:
    first = write_radiograph(tmp_path / "a.dcm", CXR[0], study_date="20240101", patient_id="A")
    second = write_radiograph(tmp_path / "b.dcm", CXR[1], study_date="20240301", patient_id="B")
    model = ScriptedChatModel(reader)
    with Assistant(settings_for(tmp_path), text_model=model, image_model=model, index=index) as a:
        answer = a.ask("What do these radiographs show?", images=[first, second])
    (finding,) = answer.findings
    assert finding.kind == "views" and finding.image_id == "img-1+img-2"
    (call,) = [c for c in model.calls if image_blocks(c)]
    assert [t for t in text_blocks(call) if t.startswith("VIEW ")] == ["VIEW 1", "VIEW 2"]


def test_analyze_image_addresses_study_series_and_slice(
    tmp_path: Path, index: KeywordIndex
) -> None:
    series_dir = write_series(tmp_path / "ct", slices=40, rows=32, columns=32)
    asked = ["series-1:slice-7", "study-1", "series-1:slice-99", "series-1"]

    def handler(call: Call) -> AIMessage | dict[str, Any]:
        if image_blocks(call):
            return AIMessage(f"{len(image_blocks(call))} image(s) read.")
        if call.tools and not any(isinstance(m, ToolMessage) for m in call.messages):
            return AIMessage(
                "",
                tool_calls=[
                    {"name": "analyze_image", "args": {"image_id": i}, "id": f"c{n}"}
                    for n, i in enumerate(asked)
                ],
            )
        return grounded_handler(call)

    model = ScriptedChatModel(handler)
    with Assistant(settings_for(tmp_path), text_model=model, image_model=model, index=index) as a:
        a.ask("What does this CT show?", images=[series_dir])
    replies = {
        m.tool_call_id: m for c in model.calls for m in c.messages if isinstance(m, ToolMessage)
    }
    assert replies["c0"].text.startswith("Slice 7 of series-1 (slice 7 of 40 in the series")
    assert replies["c0"].text.endswith("1 image(s) read.")
    assert replies["c1"].text.startswith("Series series-1 (CT chest axial series, 40 slices")
    assert replies["c1"].text.endswith("40 image(s) read.")
    assert replies["c2"].status == "error" and "shows slices 1 to 40" in replies["c2"].text
    assert replies["c3"].status != "error"


def test_extractive_mode_describes_the_series_without_reading_it(
    tmp_path: Path, index: KeywordIndex
) -> None:
    series_dir = write_series(tmp_path / "ct", slices=40, rows=32, columns=32)
    settings = Settings(home=tmp_path / "home")
    settings.models = settings.models.model_copy(update={"engine": "extractive"})
    with Assistant(settings, index=index) as a:
        answer = a.ask("What does this CT show?", images=[series_dir])
    (finding,) = answer.findings
    assert finding.kind == "series" and "series was not read" in finding.text
    assert "CT chest axial series, 40 slices, 2.5 mm apart" in finding.text


def test_phi_never_reaches_prompts_answers_events_or_checkpoints(
    tmp_path: Path, index: KeywordIndex
) -> None:
    phi = PlantedPHI()
    series_dir = write_series(
        tmp_path / phi.file_stem / "CT", slices=40, rows=32, columns=32, phi=phi
    )
    cxr = write_radiograph(
        tmp_path / f"{phi.file_stem}_chest.dcm", CXR[0], study_date="20240101", phi=phi
    )
    png = tmp_path / f"{phi.file_stem}.png"
    png.write_bytes(CXR[1].read_bytes())
    settings = settings_for(tmp_path)
    model = ScriptedChatModel(reader)
    outputs: list[str] = []
    with Assistant(settings, text_model=model, image_model=model, index=index) as a:
        for mode, data in a.stream("What does this CT show?", images=[series_dir, cxr, png]):
            outputs.append(f"{mode} {data!r}")
        answer = a.ask("What does this CT show?", images=[series_dir, cxr, png])
        outputs.append(json.dumps(answer.to_json_dict()))
        thread = answer.thread_id
    assert len(answer.findings) == 2  # the series, and the two 2D images as views
    outputs += [repr(call.messages) for call in model.calls]
    database = settings.checkpoint_path
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    # msgpack may store text in any of these encodings; search them all
    haystacks = [*outputs, stored.decode("latin-1")]
    for value in [*phi.values(), str(tmp_path)]:
        for haystack in haystacks:
            assert value.lower() not in haystack.lower(), value
    # the checkpoint holds the thread, and it continues in a fresh assistant
    with sqlite3.connect(database) as connection:
        assert connection.execute("select count(*) from checkpoints").fetchone()[0] > 0
    with Assistant(settings, text_model=model, image_model=model, index=index) as again:
        follow_up = again.ask("Is that finding common?", thread_id=thread, create=False)
    assert follow_up.kind in {"answer", "no_evidence"} and follow_up.findings == []


def test_triage_knows_a_study_from_a_picture(tmp_path: Path) -> None:
    from medgraph.graphs.attachments import attach
    from medgraph.graphs.image_reading import image_mode
    from medgraph.graphs.safety import triage_by_rules

    series_dir = write_series(tmp_path / "ct", slices=40, rows=32, columns=32)
    current, prior = write_cxr_pair(tmp_path / "pair", CXR[:2])
    cases = {
        "series": [series_dir],
        "comparison": [current, prior],
        "views": CXR[:2],
        "image": CXR[:1],
    }
    for expected, sources in cases.items():
        refs, attachments = attach(sources)
        assert len(attachments) == len(refs)
        assert image_mode(refs) == expected
        decision = triage_by_rules(
            "What does this show?", has_images=True, image_mode=image_mode(refs)
        )
        assert f"image_is_subject:{expected}" in decision.reasons
        assert not decision.ambiguous
