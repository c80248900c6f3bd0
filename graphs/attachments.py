"""What a user attached, turned into graph-state references and a per-run registry of pixels.

:func:`attach` takes image files, DICOM files, study folders and study zips. It returns the
:class:`~medgraph.graphs.state.ImageRef` list that goes into graph state (ids, content hashes and
non-identifying metadata only) and an :class:`Attachments` registry holding the decoded images
and prepared series, keyed by content hash. The registry travels in the run's config
(``configurable["medgraph_attachments"]``); LangGraph never writes such objects to a checkpoint,
so no path, file name or pixel ever reaches the checkpoint database.

Two studies of one patient and modality get the roles ``prior`` and ``current`` by study date;
only that relative order is kept.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

from langgraph.config import get_config

from medgraph.agents.images import DEFAULT_MAX_PIXELS, LoadedImage, load_image
from medgraph.agents.series import DEFAULT_MAX_SLICES, PreparedSeries, Study, load_study
from medgraph.agents.study_input import (
    DEFAULT_MAX_STUDY_BYTES,
    DEFAULT_MAX_STUDY_FILES,
    is_dicom_file,
    is_zip_file,
)
from medgraph.errors import ImageLoadError
from medgraph.graphs.state import ImageRef

__all__ = ["ATTACHMENTS_KEY", "Attachment", "Attachments", "attach", "run_attachments"]

ATTACHMENTS_KEY = "medgraph_attachments"
"""The ``configurable`` key under which a run's :class:`Attachments` travel."""

Attachment: TypeAlias = LoadedImage | PreparedSeries


class Attachments:
    """Decoded images and prepared series of one request, by content hash (never by path)."""

    def __init__(self) -> None:
        self._items: dict[str, Attachment] = {}

    def add(self, sha256: str, item: Attachment) -> None:
        """Register ``item`` under its content hash."""
        self._items[sha256] = item

    def __len__(self) -> int:
        return len(self._items)

    def get(self, ref: ImageRef) -> Attachment:
        """The pixels behind ``ref``; :class:`ImageLoadError` when this run does not hold them."""
        return self.lookup(ref.image_id, ref.sha256)

    def lookup(self, image_id: str, sha256: str) -> Attachment:
        """The pixels with content hash ``sha256`` (``image_id`` names it in the error)."""
        try:
            return self._items[sha256]
        except KeyError:
            raise ImageLoadError(
                f"{image_id} is not attached to this run (attachments are held only while "
                "the request that attached them runs); attach the image or study again"
            ) from None


def run_attachments() -> Attachments:
    """The current run's :class:`Attachments` (empty when the run was given none)."""
    try:
        configurable = get_config().get("configurable", {})
    except RuntimeError:  # outside a graph run
        return Attachments()
    found = configurable.get(ATTACHMENTS_KEY)
    return found if isinstance(found, Attachments) else Attachments()


def _is_study_source(path: Path) -> bool:
    return path.is_dir() or is_zip_file(path) or is_dicom_file(path)


def attach(
    sources: Sequence[str | os.PathLike[str]],
    *,
    max_slices: int = DEFAULT_MAX_SLICES,
    max_study_bytes: int = DEFAULT_MAX_STUDY_BYTES,
    max_study_files: int = DEFAULT_MAX_STUDY_FILES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[list[ImageRef], Attachments]:
    """Read every source (image file, DICOM file, study folder or zip) into refs and a registry.

    Ids: ``img-N`` for 2D images, ``series-N`` for volume series, ``study-N`` for DICOM studies,
    numbered in the order given. Raises :class:`ImageLoadError` (or a subclass) for a source
    that cannot be read.
    """
    registry = Attachments()
    units: list[Study | LoadedImage] = []
    for source in sources:
        path = Path(os.fspath(source)).expanduser()
        if _is_study_source(path):
            units.extend(
                load_study(
                    path,
                    max_slices=max_slices,
                    max_bytes=max_study_bytes,
                    max_files=max_study_files,
                    max_pixels=max_pixels,
                )
            )
        else:
            units.append(load_image(path, max_pixels=max_pixels))
    studies = [u for u in units if isinstance(u, Study)]
    roles = _comparison_roles(studies)
    refs: list[ImageRef] = []
    counts = {"img": 0, "series": 0, "study": 0}

    def next_id(kind: str) -> str:
        counts[kind] += 1
        return f"{kind}-{counts[kind]}"

    for unit in units:
        if isinstance(unit, LoadedImage):
            registry.add(unit.sha256, unit)
            refs.append(
                ImageRef(image_id=next_id("img"), sha256=unit.sha256, description=unit.describe())
            )
            continue
        study_id = next_id("study")
        role = roles.get(unit.key)
        first = len(refs)
        for series in unit.series:
            registry.add(series.key, series)
            refs.append(
                ImageRef(
                    image_id=next_id("series"),
                    sha256=series.key,
                    kind="series",
                    description=series.describe(),
                    study_id=study_id,
                    role=role,
                    slice_count=series.slice_count,
                    slice_numbers=series.slice_numbers,
                    positions_mm=series.positions_mm,
                    spacing_mm=series.spacing_mm,
                    warnings=series.warnings,
                )
            )
        for image in unit.images:
            registry.add(image.sha256, image)
            refs.append(
                ImageRef(
                    image_id=next_id("img"),
                    sha256=image.sha256,
                    description=image.describe(),
                    study_id=study_id,
                    role=role,
                )
            )
        study_warnings = [w for w in unit.warnings if not w.startswith("series ")]
        if study_warnings and len(refs) > first:
            refs[first] = refs[first].model_copy(
                update={"warnings": [*refs[first].warnings, *study_warnings]}
            )
    return refs, registry


def _comparison_roles(studies: Sequence[Study]) -> dict[str, Any]:
    """``{study key: "prior" | "current"}`` for two dated studies of one patient and modality."""
    distinct = {s.key: s for s in studies}
    if len(distinct) != 2:
        return {}
    first, second = sorted(distinct.values(), key=lambda s: s.when)
    comparable = (
        first.modality == second.modality
        and first.patient_key == second.patient_key
        and first.when
        and second.when
        and first.when != second.when
    )
    return {first.key: "prior", second.key: "current"} if comparable else {}
