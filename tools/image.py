"""The ``analyze_image`` tool: the reasoner asks the image reader about an attached image.

The model can never name a file. The tool is built over the images already attached to the
conversation (decoded once, at the input boundary, by :func:`medgraph.agents.images.load_image`)
and keyed by ids such as ``"img-1"``; ``image_id`` must be one of those ids. An argument that looks
like a path or URL is refused with a message listing the attached ids, and nothing is ever opened
from the argument. The graph passes the MedGemma 4B image reader as ``describe``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, TypeAlias

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from medgraph.errors import ConfigurationError, MedgraphError
from medgraph.tools.literature import _validation_message

if TYPE_CHECKING:
    from medgraph.agents.images import LoadedImage

__all__ = [
    "DEFAULT_FOCUS",
    "ImageDescriber",
    "build_analyze_image_tool",
    "looks_like_file_reference",
]

ANALYZE_IMAGE = "analyze_image"
DEFAULT_FOCUS = "overall findings"
FOCUS_MAX_CHARS = 500
_IMAGE_ID_MAX_CHARS = 200
_SHOWN_MAX_CHARS = 80

ImageDescriber: TypeAlias = Callable[["LoadedImage", str], str]
"""``(image, focus) -> findings text``; the graph passes the MedGemma 4B image reader."""

_IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".jpe",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
    ".jp2",
    ".j2k",
    ".svg",
    ".heic",
    ".heif",
    ".avif",
    ".dcm",
    ".dicom",
    ".nii",
    ".nii.gz",
)
_DRIVE_LETTER = re.compile(r"[A-Za-z]:")


def looks_like_file_reference(value: str) -> bool:
    """Whether ``value`` looks like a file path or URL rather than an attached image's id.

    True when it contains ``/``, ``\\`` or ``://``, starts with ``~``, ``.`` or a drive letter
    (``C:``), or ends in an image file extension (``.png``, ``.dcm``, ...).
    """
    text = value.strip()
    return (
        "/" in text
        or "\\" in text
        or "://" in text
        or text.startswith(("~", "."))
        or _DRIVE_LETTER.match(text) is not None
        or text.lower().endswith(_IMAGE_EXTENSIONS)
    )


def _shown(value: str) -> str:
    """``value`` quoted for a message, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _SHOWN_MAX_CHARS else text[: _SHOWN_MAX_CHARS - 3] + "..."


def _id_list(images: Mapping[str, LoadedImage]) -> str:
    return ", ".join(images) if images else "(none)"


class AnalyzeImageArgs(BaseModel):
    """Arguments of the ``analyze_image`` tool."""

    model_config = ConfigDict(extra="forbid")

    image_id: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=_IMAGE_ID_MAX_CHARS)
    ] = Field(description="The id of an attached image, e.g. 'img-1'. Never a file path or URL.")
    focus: str = Field(
        default=DEFAULT_FOCUS,
        max_length=FOCUS_MAX_CHARS,
        description="What to look at or the question to answer about the image.",
    )

    @field_validator("focus", mode="after")
    @classmethod
    def _default_when_blank(cls, value: str) -> str:
        return " ".join(value.split()) or DEFAULT_FOCUS


def _resolve(images: Mapping[str, LoadedImage], image_id: str) -> tuple[str, LoadedImage]:
    """The attached image named ``image_id``; a ToolException for anything else."""
    if looks_like_file_reference(image_id):
        raise ToolException(
            f"analyze_image accepts only the ids of images attached to this conversation, never "
            f"a file path or URL; got {_shown(image_id)}. Attached image ids: "
            f"{_id_list(images)}."
        )
    if not images:
        raise ToolException(
            "No images are attached to this conversation, so there is nothing to analyze; "
            "answer without analyze_image."
        )
    if image_id in images:
        return image_id, images[image_id]
    # Models often change the case of an id ('IMG-1'); accept that when it is unambiguous.
    matches = [key for key in images if key.casefold() == image_id.casefold()]
    if len(matches) == 1:
        return matches[0], images[matches[0]]
    raise ToolException(
        f"No attached image has id {_shown(image_id)}. Attached image ids: {_id_list(images)}."
    )


def build_analyze_image_tool(
    images: Mapping[str, LoadedImage], describe: ImageDescriber
) -> BaseTool:
    """Build the ``analyze_image`` tool over the images attached to one conversation.

    ``images`` maps ids (``"img-1"``) to decoded images; it is read at call time, so images added
    to a mutable mapping later become available. The tool takes ``image_id`` and ``focus`` (default
    ``"overall findings"``), calls ``describe(image, focus)`` and returns its text prefixed with
    the image id and, when the image has one, its :meth:`LoadedImage.describe` line. Path- or
    URL-like ids, unknown ids, bad arguments and :class:`~medgraph.errors.MedgraphError` from
    ``describe`` come back to the model as an error message; no file is ever opened.
    """
    if not callable(describe):
        raise ConfigurationError(
            f"analyze_image needs a describe(image, focus) callable, got {type(describe).__name__}"
        )
    for key in images:
        if not isinstance(key, str) or not key.strip() or looks_like_file_reference(key):
            raise ConfigurationError(
                f"image id {key!r} is not usable by analyze_image: ids must be short names such "
                f"as 'img-1', not empty and not paths or file names"
            )

    def analyze_image(image_id: str, focus: str = DEFAULT_FOCUS) -> str:
        resolved_id, image = _resolve(images, image_id)
        try:
            findings = describe(image, focus)
        except MedgraphError as error:
            raise ToolException(
                f"analyze_image could not read image {resolved_id}: {error}"
            ) from error
        text = str(findings).strip() or "(the image reader returned no findings)"
        summary = image.describe()
        header = f"Image {resolved_id}" + (f" ({summary})" if summary else "")
        return f"{header}: {text}"

    attached = (
        f"Attached image ids: {_id_list(images)}."
        if images
        else "No images are attached to this conversation."
    )
    description = (
        "Ask the image reader about an image attached to this conversation. Arguments: image_id "
        "- the id of an attached image (never a file path or URL); focus - what to look at or "
        f"the question to answer (default '{DEFAULT_FOCUS}'). Returns the reader's findings. "
        + attached
    )
    accepted = (
        f"image_id (one of: {_id_list(images)}); focus (optional text, up to "
        f"{FOCUS_MAX_CHARS} characters)"
    )
    return StructuredTool.from_function(
        func=analyze_image,
        name=ANALYZE_IMAGE,
        description=description,
        args_schema=AnalyzeImageArgs,
        handle_validation_error=_validation_message(ANALYZE_IMAGE, accepted),
        handle_tool_error=True,
    )
