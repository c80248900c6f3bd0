"""Tests for medgraph.tools.image: the analyze_image tool reaches attached images by id only.

Real images from the shared data folder (an NIH ChestX-ray14 PNG and a CR DICOM) are loaded once
through the product's loader; a recording describer stands in for the MedGemma image reader. Every
path- or URL-like id is refused with the filesystem rigged to fail, proving nothing is opened.
"""

from __future__ import annotations

import builtins
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from medgraph.agents.images import LoadedImage, load_image
from medgraph.errors import ConfigurationError, EngineError
from medgraph.tools.image import (
    DEFAULT_FOCUS,
    build_analyze_image_tool,
    looks_like_file_reference,
)

PATH_LIKE_IDS = [
    "/etc/passwd",
    "../x.png",
    "C:\\a.png",
    "file:///x",
    "https://x/y.png",
    "img-1.png",
    "~/.ssh/id_rsa",
    ".env",
    "img-1/../../etc/passwd",
    "c:secrets",
    "data:image/png;base64,iVBORw0KGgo=",
    "scan.DCM",
    " /etc/shadow ",
]


class RecordingDescriber:
    """Stands in for the image reader: records each (image, focus) and answers with a finding."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[LoadedImage, str]] = []
        self.error = error

    def __call__(self, image: LoadedImage, focus: str) -> str:
        self.calls.append((image, focus))
        if self.error is not None:
            raise self.error
        return f"  Finding about {focus} in {image.name} ({image.sha256[:8]}).\n"


@pytest.fixture(scope="module")
def images(data_dir: Path) -> dict[str, LoadedImage]:
    """Two attached images: a chest radiograph PNG and a CR DICOM (which has a describe() line)."""
    return {
        "img-1": load_image(data_dir / "images" / "nih-cxr14" / "00000001_000.png"),
        "img-2": load_image(data_dir / "images" / "dicom" / "encapsulated_cxr.dcm"),
    }


def call(tool: BaseTool, args: dict[str, Any]) -> ToolMessage:
    """Invoke ``tool`` with a ToolCall, as the graph's ToolNode does."""
    message = tool.invoke({"name": tool.name, "args": args, "id": "call-7", "type": "tool_call"})
    assert isinstance(message, ToolMessage)
    assert message.tool_call_id == "call-7" and message.name == "analyze_image"
    return message


@contextmanager
def filesystem_forbidden() -> Iterator[list[str]]:
    """Inside the block every way of opening or probing a file fails loudly and is recorded.

    Patched only around the tool call, so pytest itself can read files to report a failure.
    """
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{name}{args!r}")
            raise AssertionError(f"analyze_image touched the filesystem: {name}{args!r}")

        return blocked

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "open", refuse("open"))
        patch.setattr(io, "open", refuse("io.open"))
        patch.setattr(os, "open", refuse("os.open"))
        patch.setattr(os, "stat", refuse("os.stat"))
        patch.setattr(Path, "open", refuse("Path.open"))
        patch.setattr(Path, "read_bytes", refuse("Path.read_bytes"))
        patch.setattr(Path, "exists", refuse("Path.exists"))
        yield attempts


def test_valid_id_calls_the_describer_with_that_image_and_focus(
    images: dict[str, LoadedImage],
) -> None:
    describer = RecordingDescriber()
    tool = build_analyze_image_tool(images, describer)
    assert tool.name == "analyze_image"
    assert set(tool.args) == {"image_id", "focus"}

    message = call(tool, {"image_id": "img-1", "focus": "cardiac silhouette size"})
    assert message.status == "success"
    assert len(describer.calls) == 1
    image, focus = describer.calls[0]
    assert image is images["img-1"]
    assert focus == "cardiac silhouette size"
    # The PNG has no DICOM metadata, so no describe() line: just the id and the findings.
    assert images["img-1"].describe() == ""
    assert message.content == (
        f"Image img-1: Finding about cardiac silhouette size in {image.name} ({image.sha256[:8]})."
    )


def test_dicom_image_adds_its_describe_line(images: dict[str, LoadedImage]) -> None:
    describer = RecordingDescriber()
    message = call(build_analyze_image_tool(images, describer), {"image_id": "img-2"})
    summary = images["img-2"].describe()
    assert summary.startswith("CR ")
    assert describer.calls == [(images["img-2"], DEFAULT_FOCUS)]
    assert str(message.content).startswith(f"Image img-2 ({summary}): Finding about ")


@pytest.mark.parametrize("focus", ["", "   \n "])
def test_blank_focus_means_overall_findings(images: dict[str, LoadedImage], focus: str) -> None:
    describer = RecordingDescriber()
    call(build_analyze_image_tool(images, describer), {"image_id": "img-1", "focus": focus})
    assert describer.calls[0][1] == DEFAULT_FOCUS == "overall findings"


def test_id_case_and_spacing_are_forgiven(images: dict[str, LoadedImage]) -> None:
    describer = RecordingDescriber()
    message = call(build_analyze_image_tool(images, describer), {"image_id": " IMG-2 "})
    assert message.status == "success"
    assert describer.calls[0][0] is images["img-2"]
    assert str(message.content).startswith("Image img-2 ")


@pytest.mark.parametrize("image_id", PATH_LIKE_IDS)
def test_paths_and_urls_are_refused_without_touching_files(
    images: dict[str, LoadedImage], image_id: str
) -> None:
    describer = RecordingDescriber()
    tool = build_analyze_image_tool(images, describer)
    with filesystem_forbidden() as attempts:
        message = call(tool, {"image_id": image_id})
    assert message.status == "error"
    text = str(message.content)
    assert "accepts only the ids of images attached" in text
    assert "never a file path or URL" in text
    assert text.endswith("Attached image ids: img-1, img-2.")
    assert describer.calls == []
    assert attempts == []


def test_the_filesystem_guard_itself_works(data_dir: Path) -> None:
    png = data_dir / "images" / "nih-cxr14" / "00000001_000.png"
    with (
        pytest.raises(AssertionError, match="touched the filesystem"),
        filesystem_forbidden() as attempts,
    ):
        load_image(png)
    assert attempts
    assert load_image(png).image.size == (512, 512)  # and it is undone afterwards


def test_unknown_id_is_refused_listing_the_valid_ids(images: dict[str, LoadedImage]) -> None:
    describer = RecordingDescriber()
    message = call(build_analyze_image_tool(images, describer), {"image_id": "img-9"})
    assert message.status == "error"
    assert message.content == "No attached image has id 'img-9'. Attached image ids: img-1, img-2."
    assert describer.calls == []


def test_no_attached_images() -> None:
    describer = RecordingDescriber()
    tool = build_analyze_image_tool({}, describer)
    assert "No images are attached" in tool.description
    message = call(tool, {"image_id": "img-1"})
    assert message.status == "error"
    assert "No images are attached to this conversation" in str(message.content)
    with filesystem_forbidden() as attempts:
        refused = call(tool, {"image_id": "/etc/passwd"})
    assert attempts == []
    assert "Attached image ids: (none)." in str(refused.content)
    assert describer.calls == []


def test_description_lists_the_attached_ids(images: dict[str, LoadedImage]) -> None:
    tool = build_analyze_image_tool(images, RecordingDescriber())
    assert "Attached image ids: img-1, img-2." in tool.description
    assert "never a file path or URL" in tool.description


def test_images_added_later_are_found(images: dict[str, LoadedImage]) -> None:
    attached: dict[str, LoadedImage] = {"img-1": images["img-1"]}
    describer = RecordingDescriber()
    tool = build_analyze_image_tool(attached, describer)
    attached["img-2"] = images["img-2"]
    assert call(tool, {"image_id": "img-2"}).status == "success"
    assert describer.calls[0][0] is images["img-2"]


def test_reader_errors_come_back_as_a_message(images: dict[str, LoadedImage]) -> None:
    describer = RecordingDescriber(error=EngineError("the image model server timed out after 60 s"))
    message = call(build_analyze_image_tool(images, describer), {"image_id": "img-1"})
    assert message.status == "error"
    assert message.content == (
        "analyze_image could not read image img-1: the image model server timed out after 60 s"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, "image_id is required"),
        ({"image_id": ""}, "image_id=''"),
        ({"image_id": "img-1", "path": "/etc/passwd"}, "'path' is not an argument of this tool"),
        ({"image_id": "img-1", "focus": "x" * 501}, "focus="),
    ],
)
def test_bad_arguments_come_back_as_a_message(
    images: dict[str, LoadedImage], args: dict[str, Any], expected: str
) -> None:
    describer = RecordingDescriber()
    message = call(build_analyze_image_tool(images, describer), args)
    assert message.status == "error"
    text = str(message.content)
    assert text.startswith("Invalid arguments for tool 'analyze_image':")
    assert expected in text
    assert "image_id (one of: img-1, img-2)" in text
    assert describer.calls == []


@pytest.mark.parametrize("key", ["scan.png", "/data/x", "", "  "])
def test_builder_rejects_path_like_or_empty_ids(images: dict[str, LoadedImage], key: str) -> None:
    with pytest.raises(ConfigurationError, match="not usable by analyze_image"):
        build_analyze_image_tool({key: images["img-1"]}, RecordingDescriber())


def test_builder_rejects_a_describer_that_is_not_callable(images: dict[str, LoadedImage]) -> None:
    with pytest.raises(ConfigurationError, match="describe"):
        build_analyze_image_tool(images, "medgemma")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", PATH_LIKE_IDS)
def test_path_like_values_are_recognised(value: str) -> None:
    assert looks_like_file_reference(value)


@pytest.mark.parametrize("value", ["img-1", "img_12", "image-3", "cxr", "IMG-2", "scan-png"])
def test_plain_ids_are_not_paths(value: str) -> None:
    assert not looks_like_file_reference(value)
