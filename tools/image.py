"""The ``analyze_image`` tool: the reasoner asks the image reader about an attached image.

The model can never name a file. The tool is built over the images and DICOM series already
attached to the conversation (decoded once, at the input boundary) and keyed by ids such as
``"img-1"`` or ``"series-1"``; one slice of a series is ``"series-1:slice-40"`` (the 40th slice
shown), and a whole DICOM study is its ``"study-1"`` id. ``image_id`` must be one of those ids.
An argument that looks like a path or URL is refused with a message listing the attached ids, and
nothing is ever opened from the argument. The graph passes the MedGemma 4B image reader as
``describe``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, TypeAlias, cast

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from medgraph.errors import ConfigurationError, MedgraphError
from medgraph.tools.literature import _validation_message

if TYPE_CHECKING:
    from medgraph.agents.images import LoadedImage
    from medgraph.agents.series import PreparedSeries

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

ImageTarget: TypeAlias = "LoadedImage | PreparedSeries"
ImageDescriber: TypeAlias = Callable[["LoadedImage | PreparedSeries", str], str]
"""``(image or series, focus) -> findings text``; the graph passes the MedGemma 4B reader."""
_SLICE_ID = re.compile(r"(?P<series>.+):slice-(?P<number>\d+)", re.IGNORECASE)

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


def _id_list(images: Mapping[str, ImageTarget], studies: Mapping[str, Sequence[str]]) -> str:
    ids = [*images, *studies]
    series = [key for key, target in images.items() if hasattr(target, "slice_image")]
    if series:
        ids.append(f"slices as '{series[0]}:slice-N'")
    return ", ".join(ids) if ids else "(none)"


class AnalyzeImageArgs(BaseModel):
    """Arguments of the ``analyze_image`` tool."""

    model_config = ConfigDict(extra="forbid")

    image_id: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=_IMAGE_ID_MAX_CHARS)
    ] = Field(
        description=(
            "The id of an attached image ('img-1'), series ('series-1'), one slice of a series "
            "('series-1:slice-40') or study ('study-1'). Never a file path or URL."
        )
    )
    focus: str = Field(
        default=DEFAULT_FOCUS,
        max_length=FOCUS_MAX_CHARS,
        description="What to look at or the question to answer about the image.",
    )

    @field_validator("focus", mode="after")
    @classmethod
    def _default_when_blank(cls, value: str) -> str:
        return " ".join(value.split()) or DEFAULT_FOCUS


def _lookup(images: Mapping[str, ImageTarget], image_id: str) -> str | None:
    """The attached key for ``image_id``, allowing a change of case when unambiguous."""
    if image_id in images:
        return image_id
    # Models often change the case of an id ('IMG-1'); accept that when it is unambiguous.
    matches = [key for key in images if key.casefold() == image_id.casefold()]
    return matches[0] if len(matches) == 1 else None


def _resolve(
    images: Mapping[str, ImageTarget], studies: Mapping[str, Sequence[str]], image_id: str
) -> list[tuple[str, ImageTarget, str]]:
    """``(id, target, header)`` for each image ``image_id`` names; a ToolException otherwise."""
    if looks_like_file_reference(image_id):
        raise ToolException(
            f"analyze_image accepts only the ids of images attached to this conversation, never "
            f"a file path or URL; got {_shown(image_id)}. Attached image ids: "
            f"{_id_list(images, studies)}."
        )
    if not images:
        raise ToolException(
            "No images are attached to this conversation, so there is nothing to analyze; "
            "answer without analyze_image."
        )
    key = _lookup(images, image_id)
    if key is not None:
        return [(key, images[key], _header(key, images[key]))]
    study = next((s for s in studies if s.casefold() == image_id.casefold()), None)
    if study is not None:
        return [(m, images[m], _header(m, images[m])) for m in studies[study]]
    sliced = _SLICE_ID.fullmatch(image_id)
    if sliced:
        series_key = _lookup(images, sliced["series"])
        target = images.get(series_key) if series_key else None
        if series_key is not None and target is not None and hasattr(target, "slice_image"):
            target = cast("PreparedSeries", target)  # only a series has slices
            number = int(sliced["number"])
            shown = len(target.images)
            if not 1 <= number <= shown:
                raise ToolException(
                    f"{series_key} shows slices 1 to {shown}; got slice {number}. Use e.g. "
                    f"'{series_key}:slice-1'."
                )
            series_number = target.slice_numbers[number - 1]
            header = (
                f"Slice {number} of {series_key} (slice {series_number} of "
                f"{target.slice_count} in the series; {target.describe()})"
            )
            return [(f"{series_key}:slice-{number}", target.slice_image(number), header)]
    raise ToolException(
        f"No attached image has id {_shown(image_id)}. Attached image ids: "
        f"{_id_list(images, studies)}."
    )


def _header(image_id: str, target: ImageTarget) -> str:
    summary = target.describe()
    noun = "Series" if hasattr(target, "slice_image") else "Image"
    return f"{noun} {image_id}" + (f" ({summary})" if summary else "")


def build_analyze_image_tool(
    images: Mapping[str, ImageTarget],
    describe: ImageDescriber,
    studies: Mapping[str, Sequence[str]] | None = None,
) -> BaseTool:
    """Build the ``analyze_image`` tool over the images attached to one conversation.

    ``images`` maps ids (``"img-1"``, ``"series-1"``) to decoded images and prepared series;
    ``studies`` maps study ids (``"study-1"``) to the ids of their images and series. Both are
    read at call time. ``"series-1:slice-N"`` names the N-th shown slice of a series. The tool
    takes ``image_id`` and ``focus`` (default ``"overall findings"``), calls ``describe(target,
    focus)`` for each image named (every member of a study) and returns the text prefixed with
    the id and its non-identifying description. Path- or URL-like ids, unknown ids, bad
    arguments and :class:`~medgraph.errors.MedgraphError` from ``describe`` come back to the
    model as an error message; no file is ever opened.
    """
    studies = studies if studies is not None else {}
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
        replies = []
        for resolved_id, target, header in _resolve(images, studies, image_id):
            try:
                findings = describe(target, focus)
            except MedgraphError as error:
                raise ToolException(
                    f"analyze_image could not read image {resolved_id}: {error}"
                ) from error
            text = str(findings).strip() or "(the image reader returned no findings)"
            replies.append(f"{header}: {text}")
        return "\n".join(replies)

    attached = (
        f"Attached image ids: {_id_list(images, studies)}."
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
        f"image_id (one of: {_id_list(images, studies)}); focus (optional text, up to "
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
