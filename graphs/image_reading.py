"""How attached images are read: a series as one ordered multi-image turn, several 2D images as
views of one examination, two dated studies as a prior/current comparison, a lone image alone.

:func:`plan_readings` groups the refs of a request into :class:`Reading` s; :func:`reading_message`
builds the image model's turn for one (images as data URLs, never paths); :func:`reading_scope`
says where a finding came from ("series-1 (CT chest axial ...), slices 1-120 of 120"). Prompts
carry only modality, body part, view, orientation, slice count and spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from langchain_core.messages import HumanMessage

from medgraph.agents.images import LoadedImage, image_to_data_url
from medgraph.agents.series import PreparedSeries
from medgraph.graphs.attachments import Attachment
from medgraph.graphs.prompts import (
    COMPARISON_PROMPT,
    CT_WINDOWING_NOTE,
    IMAGE_PROMPT,
    QUESTION_LINE,
    SERIES_PROMPT,
    VIEWS_PROMPT,
)
from medgraph.graphs.state import ImageRef

__all__ = [
    "Reading",
    "image_mode",
    "plan_readings",
    "reading_message",
    "reading_scope",
    "series_message",
]

ReadingKind = Literal["image", "series", "views", "comparison"]


@dataclass(frozen=True)
class Reading:
    """One turn of the image reader: its kind and the refs it shows, in the order shown."""

    kind: ReadingKind
    refs: tuple[ImageRef, ...]

    @property
    def image_id(self) -> str:
        """The id of what is read; ids joined by ``+`` for views and comparisons."""
        return "+".join(ref.image_id for ref in self.refs)


def plan_readings(refs: Sequence[ImageRef]) -> list[Reading]:
    """Group a request's refs into readings: each series alone; the 2D images of a prior/current
    pair as one comparison; other 2D images as one set of views (or one image alone)."""
    readings = [Reading("series", (ref,)) for ref in refs if ref.kind == "series"]
    flat = [ref for ref in refs if ref.kind == "image"]
    prior = [ref for ref in flat if ref.role == "prior"]
    current = [ref for ref in flat if ref.role == "current"]
    if prior and current:
        readings.append(Reading("comparison", (*prior, *current)))
        flat = [ref for ref in flat if ref.role is None]
    if len(flat) == 1:
        readings.append(Reading("image", (flat[0],)))
    elif flat:
        readings.append(Reading("views", tuple(flat)))
    return readings


def image_mode(refs: Sequence[ImageRef]) -> str | None:
    """What the attachments are, for triage: ``comparison``, ``series``, ``views``, ``image``."""
    kinds = {reading.kind for reading in plan_readings(refs)}
    for kind in ("comparison", "series", "views", "image"):
        if kind in kinds:
            return kind
    return None


def _slice_range(ref: ImageRef) -> str:
    numbers = ref.slice_numbers
    if not numbers:
        return ""
    return (
        f"slices {numbers[0]}-{numbers[-1]} of {ref.slice_count}, shown as SLICE 1-{len(numbers)}"
    )


def reading_scope(reading: Reading) -> str:
    """Where a finding comes from, e.g. ``series-1 (CT chest axial series, ...), slices 1-120
    of 120 (85 shown, labelled SLICE 1-85)``."""
    if reading.kind == "series":
        ref = reading.refs[0]
        return f"{ref.image_id} ({ref.description}), {_slice_range(ref)}"
    if reading.kind == "comparison":
        prior = [r.image_id for r in reading.refs if r.role == "prior"]
        current = [r.image_id for r in reading.refs if r.role == "current"]
        return f"comparison: prior {', '.join(prior)} with current {', '.join(current)}"
    labels = [
        f"{ref.image_id} ({ref.description})" if ref.description else ref.image_id
        for ref in reading.refs
    ]
    return ("views: " if reading.kind == "views" else "") + ", ".join(labels)


def _image_block(image: LoadedImage) -> dict[str, str]:
    return {"type": "image", "url": image_to_data_url(image)}


def series_message(series: PreparedSeries, question: str) -> HumanMessage:
    """The series as one ordered multi-image turn: instruction, then each slice and its label."""
    spacing = f", about {series.spacing_mm:g} mm apart" if series.spacing_mm else ""
    windowing = CT_WINDOWING_NOTE if series.modality == "CT" else ""
    instruction = SERIES_PROMPT.format(
        shown=len(series.images),
        description=series.describe().split(",")[0],
        slice_count=series.slice_count,
        spacing=spacing,
        windowing=windowing,
    )
    content: list[str | dict[str, str]] = [{"type": "text", "text": " ".join(instruction.split())}]
    for shown in range(1, len(series.images) + 1):
        content.append(_image_block(series.slice_image(shown)))
        content.append({"type": "text", "text": f"SLICE {shown}"})
    content.append({"type": "text", "text": QUESTION_LINE.format(question=question)})
    return HumanMessage(content=content)


def reading_message(reading: Reading, items: Sequence[Attachment], question: str) -> HumanMessage:
    """The image model's turn for ``reading`` (``items`` are its refs' pixels, in order)."""
    if reading.kind == "series":
        series = items[0]
        assert isinstance(series, PreparedSeries)
        return series_message(series, question)
    images = [item for item in items if isinstance(item, LoadedImage)]
    if reading.kind == "image":
        return HumanMessage(
            content=[
                _image_block(images[0]),
                {"type": "text", "text": IMAGE_PROMPT.format(question=question)},
            ]
        )
    content: list[str | dict[str, str]] = []
    if reading.kind == "comparison":
        kinds = sorted({ref.description for ref in reading.refs if ref.description})
        content.append(
            {
                "type": "text",
                "text": COMPARISON_PROMPT.format(description="; ".join(kinds) or "images"),
            }
        )
        for ref, image in zip(reading.refs, images, strict=True):
            content.append({"type": "text", "text": f"{(ref.role or '').upper()} STUDY"})
            content.append(_image_block(image))
    else:
        views = [ref.description or "view" for ref in reading.refs]
        content.append(
            {
                "type": "text",
                "text": VIEWS_PROMPT.format(count=len(images), views="; ".join(views)),
            }
        )
        for number, image in enumerate(images, start=1):
            content.append({"type": "text", "text": f"VIEW {number}"})
            content.append(_image_block(image))
    content.append({"type": "text", "text": QUESTION_LINE.format(question=question)})
    return HumanMessage(content=content)


def unread_text(reading: Reading) -> str:
    """The finding without an image model: what was attached, in non-identifying terms."""
    noun = "series was" if reading.kind == "series" else "images were"
    return (
        f"No image model is configured (extractive engine); the {noun} not read. "
        f"Attached: {reading_scope(reading)}."
    )
