"""Synthetic DICOM studies for tests and benchmarks, written with pydicom.

A phantom volume: air outside a body-shaped ellipse of soft tissue (40 HU) with a bone disc
(700 HU) inside, stored as CT with RescaleSlope 1 / RescaleIntercept -1024 (raw = HU + 1024).
Files are written in shuffled order with meaningless names, one slice can be left out, and the
PHI tags can be filled with planted values so tests can prove they never come out. The CXR pair
wraps two shared NIH ChestX-ray14 PNGs as dated CR studies of one patient.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

AIR_HU = -1000
SOFT_TISSUE_HU = 40
BONE_HU = 700
INTERCEPT = -1024


@dataclass(frozen=True)
class PlantedPHI:
    """Identifying values planted in DICOM tags (and a file name) that must never come out."""

    patient_name: str = "Zyxwards^Quentavia"
    patient_id: str = "MRN55501234"
    birth_date: str = "19411103"
    institution: str = "Quarrington Memorial Infirmary"
    accession: str = "ACC98765432"
    file_stem: str = "Zyxwards_Quentavia_MRN55501234"

    def values(self) -> list[str]:
        """Every planted string as it could appear in output."""
        return [
            "Zyxwards",
            "Quentavia",
            self.patient_id,
            self.birth_date,
            "1941-11-03",
            self.institution,
            "Quarrington",
            self.accession,
            self.file_stem,
        ]


def phantom_slice(rows: int, columns: int, z: float) -> np.ndarray:
    """HU of one axial phantom slice at relative height ``z`` in 0..1 (the bone disc moves)."""
    y, x = np.mgrid[0:rows, 0:columns]
    cy, cx = (rows - 1) / 2, (columns - 1) / 2
    hu = np.full((rows, columns), AIR_HU, dtype=np.int16)
    body = ((y - cy) / (rows * 0.4)) ** 2 + ((x - cx) / (columns * 0.45)) ** 2 <= 1
    hu[body] = SOFT_TISSUE_HU
    by, bx = cy + rows * 0.2 * (z - 0.5), cx
    bone = ((y - by) / (rows * 0.1)) ** 2 + ((x - bx) / (columns * 0.1)) ** 2 <= 1
    hu[bone] = BONE_HU
    return hu


def _dataset(path: Path, sop_class: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = sop_class
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return dataset


def _identify(dataset: Dataset, phi: PlantedPHI | None, patient_id: str) -> None:
    if phi is not None:
        dataset.PatientName = phi.patient_name
        dataset.PatientID = phi.patient_id
        dataset.PatientBirthDate = phi.birth_date
        dataset.InstitutionName = phi.institution
        dataset.AccessionNumber = phi.accession
    else:
        dataset.PatientID = patient_id


def write_series(
    folder: Path,
    *,
    slices: int = 60,
    rows: int = 64,
    columns: int = 64,
    spacing: float = 2.5,
    modality: str = "CT",
    missing: Sequence[int] = (),
    duplicate: Sequence[int] = (),
    phi: PlantedPHI | None = None,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    mixed_orientation_at: int | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240105",
    body_part: str = "CHEST",
    with_positions: bool = True,
    seed: int = 0,
) -> Path:
    """Write a phantom series of ``slices`` slices into ``folder`` in shuffled file order.

    ``missing`` slice indices are left out, ``duplicate`` ones written twice. Slice ``i`` sits at
    ``z = i * spacing`` (files carry InstanceNumber ``i + 1``). MR series store the phantom's
    HU + 1024 as raw signal with no rescale.
    """
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    rng = random.Random(seed)
    indices = [i for i in range(slices) if i not in set(missing)] + list(duplicate)
    rng.shuffle(indices)
    stem = phi.file_stem if phi is not None else "slice"
    for number, index in enumerate(indices):
        sop = CTImageStorage if modality == "CT" else MRImageStorage
        path = folder / f"{stem}_{number:04d}.dcm"
        dataset = _dataset(path, sop)
        _identify(dataset, phi, patient_id="SYNTHETIC-1")
        dataset.Modality = modality
        dataset.BodyPartExamined = body_part
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = series_uid
        dataset.StudyDate = study_date
        dataset.StudyTime = "101500"
        dataset.InstanceNumber = index + 1
        turned = index == mixed_orientation_at
        dataset.ImageOrientationPatient = [0, 1, 0, 0, 0, -1] if turned else list(orientation)
        if with_positions:
            dataset.ImagePositionPatient = [0.0, 0.0, index * spacing]
        dataset.PixelSpacing = [0.8, 0.8]
        dataset.SliceThickness = spacing
        dataset.Rows, dataset.Columns = rows, columns
        dataset.SamplesPerPixel = 1
        dataset.PhotometricInterpretation = "MONOCHROME2"
        dataset.BitsAllocated = 16
        dataset.BitsStored = 16
        dataset.HighBit = 15
        dataset.PixelRepresentation = 0
        hu = phantom_slice(rows, columns, index / max(1, slices - 1))
        if modality == "CT":
            dataset.RescaleSlope = 1
            dataset.RescaleIntercept = INTERCEPT
        dataset.PixelData = (hu.astype(np.int32) - INTERCEPT).astype(np.uint16).tobytes()
        dataset.save_as(path, enforce_file_format=True)
    return folder


def write_radiograph(
    path: Path,
    png: Path,
    *,
    study_date: str,
    patient_id: str = "SYNTHETIC-CXR",
    phi: PlantedPHI | None = None,
) -> Path:
    """Wrap a greyscale PNG as a one-image CR chest PA study dated ``study_date``."""
    grey = np.asarray(Image.open(png).convert("L"), dtype=np.uint8)
    dataset = _dataset(path, SecondaryCaptureImageStorage)
    _identify(dataset, phi, patient_id=patient_id)
    dataset.Modality = "CR"
    dataset.BodyPartExamined = "CHEST"
    dataset.ViewPosition = "PA"
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.StudyDate = study_date
    dataset.StudyTime = "090000"
    dataset.InstanceNumber = 1
    dataset.Rows, dataset.Columns = grey.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = 8
    dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = grey.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


def write_cxr_pair(folder: Path, pngs: Sequence[Path]) -> tuple[Path, Path]:
    """Two dated CR studies of one synthetic patient: (current, prior), given newest first so
    that ordering by study date is what puts the prior first."""
    current = write_radiograph(folder / "current" / "cxr.dcm", pngs[0], study_date="20240610")
    prior = write_radiograph(folder / "prior" / "cxr.dcm", pngs[1], study_date="20230115")
    return current, prior
