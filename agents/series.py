"""DICOM studies: series grouped, ordered, checked, windowed and sampled for MedGemma 4B.

A study (a folder or zip, see :mod:`medgraph.agents.study_input`) is read in two passes:

1. **Headers** of every file (no pixels): files are grouped by SeriesInstanceUID and ordered by
   ImagePositionPatient projected on the slice normal (the cross product of the
   ImageOrientationPatient row and column vectors), or by InstanceNumber when positions are
   missing. Geometry is checked: mixed orientations are an error; duplicate positions and gaps
   larger than 1.5 x the median spacing (missing slices) are warnings that name the slices.
2. **Pixels** of the sampled slices only, one file at a time: at most ``max_slices`` (default
   85, as in Google's ``high_dimensional_ct`` notebook) spread evenly over the series, with their
   slice numbers and positions recorded. Values are rescaled to modality units (HU for CT, by
   RescaleSlope/Intercept). CT slices are windowed three ways into RGB (red -1024..1024 HU wide,
   green -135..215 HU soft tissue, blue 0..80 HU brain, as MedGemma 1.5 was trained); MR and
   other volumes get one window per volume from the 0.5th..99.5th percentiles of the sampled
   slices. Slices wider than :data:`MAX_SLICE_SIDE` are reduced as they are read.

Memory stays bounded by the sampled output (``max_slices`` reduced RGB slices) plus one slice at
full resolution. Series identifiers, dates and patient fields are read only to group and order;
what leaves this module is the modality, body part, view, orientation, slice count and spacing,
and hashed keys.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.pixels import pixel_array as dicom_pixel_array

from medgraph.agents.images import DEFAULT_MAX_PIXELS, LoadedImage, load_image
from medgraph.agents.study_input import (
    DEFAULT_MAX_STUDY_BYTES,
    DEFAULT_MAX_STUDY_FILES,
    StudyFile,
    is_dicom_file,
    study_files,
)
from medgraph.errors import ImageLoadError, SeriesGeometryError

__all__ = [
    "CT_WINDOWS",
    "DEFAULT_MAX_SLICES",
    "MAX_SLICE_SIDE",
    "VOLUME_MODALITIES",
    "PreparedSeries",
    "SliceHeader",
    "Study",
    "ct_windows_rgb",
    "load_study",
    "order_slices",
    "read_header",
    "sample_indices",
]

DEFAULT_MAX_SLICES: int = 85
"""Slices sent to MedGemma per series by default (the cap of Google's CT notebook)."""

CT_WINDOWS: tuple[tuple[float, float], ...] = ((-1024.0, 1024.0), (-135.0, 215.0), (0.0, 80.0))
"""(low, high) HU of the red, green and blue channels: wide, soft tissue, brain."""

MR_PERCENTILES: tuple[float, float] = (0.5, 99.5)
"""Per-volume window of MR (and other non-CT) series, as percentiles of the sampled slices."""

MAX_SLICE_SIDE: int = 896
"""Longest side of a prepared slice; MedGemma's processor resizes to 896 x 896 anyway."""

VOLUME_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})
"""Modalities whose multi-slice series are read as one volume."""

_MISSING_GAP_FACTOR = 1.5
_DUPLICATE_MM = 1e-3
_PERCENTILE_SUBSAMPLE = 4  # every 4th pixel per axis feeds the MR percentiles
_HEADER_TAGS = [
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "PatientID",
    "Modality",
    "BodyPartExamined",
    "ViewPosition",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "PixelSpacing",
    "SliceThickness",
]


@dataclass(frozen=True)
class SliceHeader:
    """What the header pass keeps of one DICOM file: hashed keys and geometry, no PHI."""

    file: StudyFile
    series_key: str
    study_key: str
    patient_key: str
    study_when: str
    """StudyDate + StudyTime, only ever compared (prior/current order), never shown."""
    modality: str
    body_part: str
    view: str
    orientation: tuple[float, ...] | None
    position: tuple[float, float, float] | None
    instance: int | None
    rows: int
    columns: int
    frames: int


@dataclass
class PreparedSeries:
    """A series ready for the image model: ordered, sampled, windowed RGB slices.

    ``slice_numbers`` are the 1-based numbers of the shown slices in the ordered series;
    ``positions_mm`` their distance from the first slice along the slice normal (``None`` when
    the series was ordered by InstanceNumber).
    """

    key: str
    study_key: str
    modality: str
    body_part: str
    orientation: str
    slice_count: int
    spacing_mm: float | None
    slice_numbers: list[int]
    positions_mm: list[float] | None
    images: list[Image.Image]
    windowing: str
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line such as ``"CT chest axial series, 120 slices (85 shown), 2.5 mm apart"``."""
        words = [self.modality or "DICOM"]
        if self.body_part:
            words.append(self.body_part.lower().replace("_", " "))
        if self.orientation:
            words.append(self.orientation)
        text = " ".join(words) + f" series, {self.slice_count} slices"
        if len(self.images) < self.slice_count:
            text += f" ({len(self.images)} shown)"
        if self.spacing_mm is not None:
            text += f", {self.spacing_mm:g} mm apart"
        return text

    def slice_image(self, shown: int) -> LoadedImage:
        """Shown slice ``shown`` (1-based) as a :class:`LoadedImage`."""
        if not 1 <= shown <= len(self.images):
            raise ImageLoadError(
                f"slice {shown} is not shown; pick a slice from 1 to {len(self.images)}"
            )
        image = self.images[shown - 1]
        digest = hashlib.sha256(f"{self.key}:{shown}".encode()).hexdigest()
        number = self.slice_numbers[shown - 1]
        metadata = {"modality": self.modality} if self.modality else {}
        if self.body_part:
            metadata["body_part"] = self.body_part
        return LoadedImage(
            image=image,
            name=f"slice-{number}",
            sha256=digest,
            media_type="image/x-pil-image",
            metadata=metadata,
        )


@dataclass
class Study:
    """One DICOM study: volume series, and 2D images (radiograph views, single slices)."""

    key: str
    patient_key: str
    when: str
    modality: str
    series: list[PreparedSeries] = field(default_factory=list)
    images: list[LoadedImage] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _hash(value: object) -> str:
    return hashlib.sha256(str(value or "").encode()).hexdigest()


def _code(value: object) -> str:
    text = str(value or "").strip().upper()
    return text if text.replace("_", "").replace(" ", "").isalnum() and len(text) <= 16 else ""


def _floats(value: object, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(np.isfinite(numbers)) else None


def read_header(file: StudyFile) -> SliceHeader | None:
    """The header of one study file, or ``None`` when it is not a DICOM image (no Pixel Data)."""
    data = file.read()
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        if not any(k in dataset for k in ("Rows", "Columns")):
            return None  # DICOMDIR, structured reports, presentation states
        position = _floats(dataset.get("ImagePositionPatient"), 3)
        instance = dataset.get("InstanceNumber")
        return SliceHeader(
            file=file,
            series_key=_hash(dataset.get("SeriesInstanceUID")),
            study_key=_hash(dataset.get("StudyInstanceUID")),
            patient_key=_hash(dataset.get("PatientID")),
            study_when=f"{dataset.get('StudyDate', '') or ''}{dataset.get('StudyTime', '') or ''}",
            modality=_code(dataset.get("Modality")),
            body_part=_code(dataset.get("BodyPartExamined")),
            view=_code(dataset.get("ViewPosition")),
            orientation=_floats(dataset.get("ImageOrientationPatient"), 6),
            position=(position[0], position[1], position[2]) if position else None,
            instance=int(instance) if instance not in (None, "") else None,
            rows=int(dataset.Rows),
            columns=int(dataset.Columns),
            frames=int(dataset.get("NumberOfFrames") or 1),
        )
    except Exception as error:
        # pydicom raises many exception types on malformed headers.
        raise ImageLoadError(
            f"study {file.label} is a damaged DICOM file ({type(error).__name__}); re-export "
            "the study"
        ) from error


def _orientation_name(orientation: tuple[float, ...]) -> str:
    normal = np.cross(orientation[:3], orientation[3:])
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < 0.9:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


@dataclass(frozen=True)
class OrderedSlices:
    """A series in slice order: the headers, positions along the normal, spacing, warnings."""

    headers: list[SliceHeader]
    positions_mm: list[float] | None
    spacing_mm: float | None
    orientation: str
    warnings: list[str]


def order_slices(headers: Sequence[SliceHeader], *, label: str = "series") -> OrderedSlices:
    """Order one series along its slice normal (InstanceNumber when positions are missing).

    Raises :class:`SeriesGeometryError` for mixed orientations or when neither positions nor
    instance numbers give an order. Duplicate slices are dropped and, like gaps wider than
    1.5 x the median spacing (missing slices), reported in ``warnings`` by slice number.
    """
    orientations = {tuple(round(v, 3) for v in h.orientation) for h in headers if h.orientation}
    if len(orientations) > 1:
        names = sorted({_orientation_name(o) for o in orientations})
        raise SeriesGeometryError(
            f"{label} mixes {len(orientations)} slice orientations ({', '.join(names)}); a "
            "volume needs one orientation: export each orientation as its own series"
        )
    orientation = next(iter(orientations)) if orientations else None
    if orientation is not None and all(h.position is not None for h in headers):
        normal = np.cross(orientation[:3], orientation[3:])
        projected = [float(np.dot(h.position, normal)) for h in headers]  # type: ignore[arg-type]
        order = sorted(range(len(headers)), key=lambda i: projected[i])
        return _checked(
            [headers[i] for i in order],
            [projected[i] for i in order],
            _orientation_name(orientation),
            label,
        )
    if all(h.instance is not None for h in headers):
        ordered = sorted(headers, key=lambda h: h.instance or 0)
        instances = [float(h.instance or 0) for h in ordered]
        name = _orientation_name(orientation) if orientation else ""
        checked = _checked(ordered, instances, name, label)
        return OrderedSlices(checked.headers, None, None, name, checked.warnings)
    raise SeriesGeometryError(
        f"{label} has slices with neither ImagePositionPatient nor InstanceNumber, so their "
        "order is unknown; re-export the series with its geometry tags"
    )


def _checked(
    ordered: list[SliceHeader], coordinates: list[float], orientation: str, label: str
) -> OrderedSlices:
    """Drop duplicates and find gaps along ``coordinates`` (mm, or instance numbers)."""
    warnings: list[str] = []
    kept_headers, kept = [ordered[0]], [coordinates[0]]
    duplicates: list[int] = []
    for header, coordinate in zip(ordered[1:], coordinates[1:], strict=True):
        if abs(coordinate - kept[-1]) < _DUPLICATE_MM:
            duplicates.append(len(kept_headers))
            continue
        kept_headers.append(header)
        kept.append(coordinate)
    if duplicates:
        shown = ", ".join(str(n) for n in duplicates[:10])
        warnings.append(
            f"{label}: {len(duplicates)} duplicate slice(s) at slice {shown} were dropped"
        )
    steps = np.diff(kept)
    spacing = float(np.median(steps)) if len(steps) else None
    if spacing:
        gaps = [i for i, step in enumerate(steps) if step > _MISSING_GAP_FACTOR * spacing]
        for i in gaps[:10]:
            missing = max(1, round(float(steps[i]) / spacing) - 1)
            warnings.append(
                f"{label}: about {missing} slice(s) missing between slice {i + 1} and "
                f"{i + 2} (gap {float(steps[i]):.3g}, expected {spacing:.3g})"
            )
    offsets = [c - kept[0] for c in kept]
    return OrderedSlices(
        kept_headers, offsets, round(spacing, 3) if spacing else None, orientation, warnings
    )


def sample_indices(count: int, max_slices: int = DEFAULT_MAX_SLICES) -> list[int]:
    """Indices of at most ``max_slices`` of ``count`` slices, evenly spread, first and last kept."""
    if max_slices < 1:
        raise ValueError(f"max_slices must be 1 or more, got {max_slices}")
    if count <= max_slices:
        return list(range(count))
    if max_slices == 1:
        return [count // 2]
    return [round(i * (count - 1) / (max_slices - 1)) for i in range(max_slices)]


def ct_windows_rgb(hu: np.ndarray) -> np.ndarray:
    """HU values as uint8 RGB: one :data:`CT_WINDOWS` window per channel."""
    channels = [
        np.rint(np.clip((hu - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)
        for low, high in CT_WINDOWS
    ]
    return np.stack(channels, axis=-1)


def _window_grey(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros((*values.shape, 3), dtype=np.uint8)
    grey = np.rint(np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(grey[:, :, np.newaxis], 3, axis=2)


def _modality_values(header: SliceHeader, max_pixels: int) -> np.ndarray:
    """One slice's pixels in modality units (HU for CT), as float32."""
    if header.rows * header.columns > max_pixels:
        raise ImageLoadError(
            f"study {header.file.label}: slice is {header.columns}x{header.rows}, over the pixel "
            f"limit of {max_pixels:,}; downscale the series"
        )
    try:
        dataset: Dataset = pydicom.dcmread(io.BytesIO(header.file.read()))
        pixels = dicom_pixel_array(dataset, index=0)
        if pixels.ndim != 2:
            raise ImageLoadError(
                f"study {header.file.label}: colour slices are not supported in a volume; "
                "export the series as greyscale"
            )
        values = apply_modality_lut(pixels, dataset)
    except ImageLoadError:
        raise
    except Exception as error:
        raise ImageLoadError(
            f"study {header.file.label}: cannot decode slice pixels ({type(error).__name__}: "
            f"{error}); re-export the series uncompressed or install its decoder"
        ) from error
    return np.asarray(values, dtype=np.float32)


def _reduced(rgb: np.ndarray) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(rgb))
    if max(image.size) > MAX_SLICE_SIDE:
        image.thumbnail((MAX_SLICE_SIDE, MAX_SLICE_SIDE), Image.Resampling.LANCZOS)
    return image


def prepare_series(
    headers: Sequence[SliceHeader],
    *,
    max_slices: int = DEFAULT_MAX_SLICES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    label: str = "series",
) -> PreparedSeries:
    """Order, check, sample and window one series (see the module docstring)."""
    ordered = order_slices(headers, label=label)
    picked = sample_indices(len(ordered.headers), max_slices)
    first = ordered.headers[0]
    modality = first.modality
    images: list[Image.Image] = []
    if modality == "CT":
        windowing = "CT windows as RGB: wide -1024..1024 HU, soft tissue -135..215, brain 0..80"
        for index in picked:
            hu = _modality_values(ordered.headers[index], max_pixels)
            images.append(_reduced(ct_windows_rgb(hu)))
    else:
        # Percentiles of a subsample of every shown slice first (one slice in memory at a time),
        # then the window applied to each slice on a second read.
        samples = [
            _modality_values(ordered.headers[i], max_pixels)[
                ::_PERCENTILE_SUBSAMPLE, ::_PERCENTILE_SUBSAMPLE
            ].ravel()
            for i in picked
        ]
        low, high = (float(v) for v in np.percentile(np.concatenate(samples), MR_PERCENTILES))
        del samples
        windowing = "one window per volume: 0.5th..99.5th percentile"
        for index in picked:
            values = _modality_values(ordered.headers[index], max_pixels)
            images.append(_reduced(_window_grey(values, low, high)))
    return PreparedSeries(
        key=hashlib.sha256(f"{first.study_key}:{first.series_key}".encode()).hexdigest(),
        study_key=first.study_key,
        modality=modality,
        body_part=first.body_part,
        orientation=ordered.orientation,
        slice_count=len(ordered.headers),
        spacing_mm=ordered.spacing_mm,
        slice_numbers=[i + 1 for i in picked],
        positions_mm=(
            [round(ordered.positions_mm[i], 3) for i in picked]
            if ordered.positions_mm is not None
            else None
        ),
        images=images,
        windowing=windowing,
        warnings=list(ordered.warnings),
    )


def load_study(
    source: str | os.PathLike[str],
    *,
    max_slices: int = DEFAULT_MAX_SLICES,
    max_bytes: int = DEFAULT_MAX_STUDY_BYTES,
    max_files: int = DEFAULT_MAX_STUDY_FILES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Study]:
    """Read a study folder or zip into its studies (usually one), oldest first.

    Multi-slice CT/MR/PT/NM series become :class:`PreparedSeries`; every other image (radiograph
    views, a lone slice) is decoded by :func:`load_image`. Files that are not DICOM images are
    skipped (counted in a warning). Raises :class:`ImageLoadError` (and its subclasses) for a
    study that cannot be read, is over the limits, or has no DICOM image.
    """
    files = study_files(source, max_bytes=max_bytes, max_files=max_files)
    headers: list[SliceHeader] = []
    skipped = 0
    for file in files:
        header = read_header(file)
        if header is None:
            skipped += 1
        else:
            headers.append(header)
    if not headers and is_dicom_file(Path(os.fspath(source))):
        # A lone DICOM file that is not an image (a report, a DICOMDIR): the image loader says
        # precisely what it is.
        load_image(Path(os.fspath(source)), max_pixels=max_pixels)
    if not headers:
        raise ImageLoadError(
            f"{source}: no DICOM images among {len(files)} file(s); pass a folder or zip of "
            "DICOM files (each with the 'DICM' marker)"
        )
    by_study: dict[str, list[SliceHeader]] = {}
    for header in headers:
        by_study.setdefault(header.study_key, []).append(header)
    studies = []
    for study_headers in by_study.values():
        try:
            studies.append(_study(study_headers, max_slices=max_slices, max_pixels=max_pixels))
        except ImageLoadError:
            if len(files) == 1 and is_dicom_file(Path(os.fspath(source))):
                # A lone file the user named: decoding it by path gives the same reason, naming it.
                load_image(Path(os.fspath(source)), max_pixels=max_pixels)
            raise
    if skipped:
        studies[0].warnings.append(f"{skipped} file(s) that are not DICOM images were skipped")
    studies.sort(key=lambda s: s.when)
    return studies


def _study(
    headers: list[SliceHeader],
    *,
    max_slices: int,
    max_pixels: int,
) -> Study:
    first = headers[0]
    study = Study(
        key=first.study_key,
        patient_key=first.patient_key,
        when=first.study_when,
        modality=first.modality,
    )
    by_series: dict[str, list[SliceHeader]] = {}
    for header in headers:
        by_series.setdefault(header.series_key, []).append(header)
    for number, series_headers in enumerate(by_series.values(), start=1):
        volume = (
            len(series_headers) > 1
            and series_headers[0].modality in VOLUME_MODALITIES
            and all(h.frames == 1 for h in series_headers)
        )
        if volume:
            prepared = prepare_series(
                series_headers,
                max_slices=max_slices,
                max_pixels=max_pixels,
                label=f"series {number}",
            )
            study.series.append(prepared)
            study.warnings.extend(prepared.warnings)
            continue
        for header in sorted(series_headers, key=lambda h: h.instance or 0):
            loaded = load_image(header.file.read(), max_pixels=max_pixels)
            study.images.append(loaded)
    return study
