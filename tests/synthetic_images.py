"""Stand-ins for the shared test images, drawn here, for machines without ``MEDGRAPH_DATA``.

Each file has the name, format and the properties the tests rely on of its real counterpart in
the shared data folder (see that folder's README): 512x512 greyscale chest-radiograph PNGs, a
640x480 RGB JPEG, a JPEG Baseline CR DICOM with a patient ID, and a 512x512 CT slice (implicit VR
little endian, window -650/1500, rescale -1024, reaching 0 HU). Their pixels are synthetic.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _chest(size: int, seed: int) -> np.ndarray:
    """A radiograph-like greyscale picture: bright body, two darker lung fields, some noise."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    body = 200 - 120 * ((cols - 0.5) ** 2 + (rows - 0.55) ** 2)
    lungs = ((cols - 0.32) ** 2 / 0.02 + (rows - 0.5) ** 2 / 0.08 < 1) | (
        (cols - 0.68) ** 2 / 0.02 + (rows - 0.5) ** 2 / 0.08 < 1
    )
    picture = np.where(lungs, body - 110, body)
    noise = np.random.default_rng(seed).normal(0, 6, picture.shape)
    return np.clip(picture + noise, 0, 245).astype(np.uint8)


def _smear() -> np.ndarray:
    """A blood-smear-like RGB picture: pale background with smooth pink cells."""
    rows, cols = np.mgrid[0:480, 0:640]
    picture = np.empty((480, 640, 3), dtype=np.float64)
    picture[...] = (226, 214, 200)
    for index, (row, col) in enumerate(np.random.default_rng(7).integers(30, 450, (40, 2))):
        distance = np.hypot(rows - row, cols - col * 1.35)
        cell = np.clip(1 - distance / (22 + index % 7), 0, 1)[..., None]
        picture = picture * (1 - cell) + np.array((205, 110, 130)) * cell
    return picture.astype(np.uint8)


def _file_meta(sop_class: str, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    return meta


def _image_module(dataset: Dataset, pixels: np.ndarray, *, bits: int, signed: bool) -> None:
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.BitsAllocated = bits
    dataset.BitsStored = bits
    dataset.HighBit = bits - 1
    dataset.PixelRepresentation = 1 if signed else 0


def encapsulated_cr(path: Path) -> Path:
    """A 1024x1024 8-bit CR radiograph stored as JPEG Baseline, with a (synthetic) patient ID."""
    pixels = _chest(1024, seed=3)
    jpeg = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(jpeg, format="JPEG", quality=90)
    dataset = Dataset()
    dataset.file_meta = _file_meta(CR_IMAGE_STORAGE, JPEGBaseline8Bit)
    dataset.SOPClassUID = CR_IMAGE_STORAGE
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CR"
    dataset.PatientID = "5a0d6cf6synthetic"
    _image_module(dataset, pixels, bits=8, signed=False)
    dataset.PixelData = encapsulate([jpeg.getvalue()])
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True
    dataset.save_as(path, enforce_file_format=True)
    return path


def ct_slice(path: Path) -> Path:
    """A 512x512 CT slice in implicit VR little endian: stored -1024..1024, i.e. -2048..0 HU."""
    rows, cols = np.mgrid[0:512, 0:512]
    inside = (cols - 256) ** 2 / 200**2 + (rows - 256) ** 2 / 150**2 < 1
    stored = np.where(inside, 1024, -1024).astype(np.int16)
    stored[240:272, 100:412] = 0  # a band of air-like tissue between the two extremes
    dataset = Dataset()
    dataset.file_meta = _file_meta(CT_IMAGE_STORAGE, ImplicitVRLittleEndian)
    dataset.SOPClassUID = CT_IMAGE_STORAGE
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CT"
    dataset.BodyPartExamined = "CHEST"
    dataset.WindowCenter = -650
    dataset.WindowWidth = 1500
    dataset.RescaleIntercept = -1024
    dataset.RescaleSlope = 1
    _image_module(dataset, stored, bits=16, signed=True)
    dataset.PixelData = stored.tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


def write_test_images(images: Path) -> Path:
    """Write every stand-in image under ``images`` (the layout of the shared ``images/``)."""
    cxr = images / "nih-cxr14"
    cxr.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(("00000001_000.png", "00027426_000.png")):
        Image.fromarray(_chest(512, seed=seed), mode="L").save(cxr / name)
    bccd = images / "bccd"
    bccd.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_smear(), mode="RGB").save(bccd / "BloodImage_00000.jpg", quality=90)
    dicom = images / "dicom"
    dicom.mkdir(parents=True, exist_ok=True)
    encapsulated_cr(dicom / "encapsulated_cxr.dcm")
    ct_slice(dicom / "ct_blank_slice.dcm")
    return images
