"""Tests for medgraph.agents.images: every image source, DICOM rendering, privacy and errors."""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.sequence import Sequence

from medgraph.agents.images import (
    DEFAULT_MAX_PIXELS,
    SAFE_DICOM_TAGS,
    LoadedImage,
    image_to_data_url,
    is_image_block,
    load_image,
    load_image_block,
)
from medgraph.errors import ImageLoadError, ImageTooLargeError
from tests.support import png_header_only, shared_data_dir

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


IMAGES = shared_data_dir() / "images"
CXR_PNGS = sorted((IMAGES / "nih-cxr14").glob("*.png"))
BCCD_JPEG = IMAGES / "bccd" / "BloodImage_00000.jpg"
ENCAPSULATED_CXR = IMAGES / "dicom" / "encapsulated_cxr.dcm"
CT_SLICE = IMAGES / "dicom" / "ct_blank_slice.dcm"


def _testdata(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom ships no test file {name}"
    return Path(path)


def _pixels(image: LoadedImage) -> np.ndarray:
    return np.asarray(image.image)


def _grey(image: LoadedImage) -> np.ndarray:
    """The single grey channel of a loaded monochrome image (asserting R == G == B)."""
    pixels = _pixels(image)
    assert np.array_equal(pixels[..., 0], pixels[..., 1])
    assert np.array_equal(pixels[..., 0], pixels[..., 2])
    return pixels[..., 0].astype(np.int64)


def _save_dicom(dataset: Dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path


def _linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 linear window, mapped onto 0..255 (written out independently)."""
    unit = (values - (center - 0.5)) / (width - 1) + 0.5
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0)


def _modality_values(dataset: Dataset) -> np.ndarray:
    raw = pixel_array(dataset).astype(np.float64)
    slope = float(dataset.get("RescaleSlope", 1))
    intercept = float(dataset.get("RescaleIntercept", 0))
    return raw * slope + intercept


def _assert_preserves_order(raw: np.ndarray, out: np.ndarray, *, inverted: bool = False) -> None:
    """Sorting pixels by stored value must sort the output too (descending when inverted)."""
    order = np.argsort(raw.ravel(), kind="stable")
    ranked = out.ravel()[order].astype(np.int64)
    steps = np.diff(ranked)
    if inverted:
        assert (steps <= 0).all()
    else:
        assert (steps >= 0).all()
    assert ranked[0] != ranked[-1]


# --- ordinary image files ---------------------------------------------------------------------


@pytest.mark.parametrize("path", CXR_PNGS, ids=lambda p: p.name)
def test_png_chest_xray_loads_as_rgb_with_source_pixels(path: Path) -> None:
    loaded = load_image(path)
    with Image.open(path) as source:
        expected = np.asarray(source.convert("RGB"))
        source_size = source.size
    assert loaded.image.mode == "RGB"
    assert loaded.image.size == source_size
    assert np.array_equal(_pixels(loaded), expected)
    assert loaded.name == path.name
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.media_type == "image/png"
    assert loaded.metadata == {}
    assert loaded.describe() == ""


def test_jpeg_blood_smear_loads_as_rgb_with_source_pixels() -> None:
    loaded = load_image(str(BCCD_JPEG))
    with Image.open(BCCD_JPEG) as source:
        expected = np.asarray(source.convert("RGB"))
    assert loaded.image.mode == "RGB"
    assert _pixels(loaded).shape == expected.shape
    assert np.array_equal(_pixels(loaded), expected)
    assert loaded.media_type == "image/jpeg"


def test_format_comes_from_content_not_extension(tmp_path: Path) -> None:
    disguised = tmp_path / "scan.dcm"
    disguised.write_bytes(BCCD_JPEG.read_bytes())
    misnamed_dicom = tmp_path / "photo.png"
    misnamed_dicom.write_bytes(ENCAPSULATED_CXR.read_bytes())
    assert load_image(disguised).media_type == "image/jpeg"
    assert load_image(misnamed_dicom).media_type == "application/dicom"


def test_bytes_source_gets_hash_name_and_same_pixels() -> None:
    data = CXR_PNGS[0].read_bytes()
    loaded = load_image(data)
    digest = hashlib.sha256(data).hexdigest()
    assert loaded.sha256 == digest
    assert loaded.name == f"image-{digest[:8]}"
    assert np.array_equal(_pixels(loaded), _pixels(load_image(CXR_PNGS[0])))
    assert load_image(data, name="front.png").name == "front.png"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    upright = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.jpg"
    upright.save(path, exif=exif.tobytes())
    assert load_image(path).image.size == (20, 40)


def test_gif_frames_are_selectable(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "two.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    first, second = load_image(path), load_image(path, frame=1)
    assert _pixels(first)[0, 0, 0] > 200 and _pixels(first)[0, 0, 2] < 50
    assert _pixels(second)[0, 0, 2] > 200 and _pixels(second)[0, 0, 0] < 50
    with pytest.raises(ImageLoadError, match=r"two\.gif.*frame 2.*2 frame"):
        load_image(path, frame=2)


def test_sixteen_bit_greyscale_is_stretched_not_clipped(tmp_path: Path) -> None:
    ramp = np.linspace(1000, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    grey = _grey(load_image(path))
    assert grey.min() == 0 and grey.max() == 255
    _assert_preserves_order(ramp, grey)


def test_transparency_is_composited_onto_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 0, 255))
    pixels = _pixels(load_image(rgba))
    assert tuple(pixels[0, 0]) == (0, 0, 0)
    assert tuple(pixels[3, 3]) == (255, 255, 255)


def test_pil_image_source() -> None:
    with Image.open(CXR_PNGS[0]) as source:
        source.load()
        loaded = load_image(source)
        expected = np.asarray(source.convert("RGB"))
    assert loaded.image.mode == "RGB"
    assert np.array_equal(_pixels(loaded), expected)
    assert loaded.name == f"image-{loaded.sha256[:8]}"
    assert loaded.media_type == "image/png"


# --- DICOM ------------------------------------------------------------------------------------


def test_encapsulated_jpeg_cr_decodes_as_stored() -> None:
    dataset = pydicom.dcmread(ENCAPSULATED_CXR)
    assert dataset.file_meta.TransferSyntaxUID.is_compressed
    loaded = load_image(ENCAPSULATED_CXR)
    assert loaded.image.mode == "RGB"
    assert loaded.image.size == (dataset.Columns, dataset.Rows)
    # 8-bit data without a window is shown as stored: identical to pydicom's decode.
    assert np.array_equal(_grey(loaded), pixel_array(dataset))
    assert loaded.media_type == "application/dicom"
    assert loaded.metadata["modality"] == dataset.Modality
    assert loaded.describe().startswith(f"{dataset.Modality} ")


def test_ct_slice_applies_its_window() -> None:
    dataset = pydicom.dcmread(CT_SLICE)
    loaded = load_image(CT_SLICE)
    assert loaded.image.size == (dataset.Columns, dataset.Rows)
    hounsfield = _modality_values(dataset)
    expected = _linear_window(hounsfield, float(dataset.WindowCenter), float(dataset.WindowWidth))
    assert np.abs(_grey(loaded) - expected).max() <= 1
    assert loaded.metadata == {"modality": "CT", "body_part": "CHEST"}
    assert loaded.describe() == "CT chest scan"


def test_window_changes_output_range_compared_with_min_max(tmp_path: Path) -> None:
    dataset = pydicom.dcmread(CT_SLICE)
    windowed = _grey(load_image(CT_SLICE))
    del dataset.WindowCenter, dataset.WindowWidth
    unwindowed = _grey(load_image(_save_dicom(dataset, tmp_path / "nowindow.dcm")))
    assert (unwindowed.min(), unwindowed.max()) == (0, 255)
    # Window -650/1500 ends at +100 HU while the slice only reaches 0 HU: white is never reached.
    assert windowed.max() < 250
    assert not np.array_equal(windowed, unwindowed)


def test_mr_small_window_matches_dicom_formula() -> None:
    path = _testdata("MR_small.dcm")
    dataset = pydicom.dcmread(path)
    center, width = float(dataset.WindowCenter), float(dataset.WindowWidth)
    expected = _linear_window(_modality_values(dataset), center, width)
    grey = _grey(load_image(path))
    assert grey.shape == (dataset.Rows, dataset.Columns)
    assert np.abs(grey - expected).max() <= 1


def test_ct_small_without_window_uses_min_max_and_keeps_order() -> None:
    path = _testdata("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    assert "WindowCenter" not in dataset
    loaded = load_image(path)
    assert loaded.image.size == (dataset.Columns, dataset.Rows)
    grey = _grey(loaded)
    assert (grey.min(), grey.max()) == (0, 255)
    _assert_preserves_order(pixel_array(dataset), grey)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    path = _testdata("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    raw = pixel_array(dataset)
    as_monochrome2 = _grey(load_image(path))
    dataset.PhotometricInterpretation = "MONOCHROME1"
    as_monochrome1 = _grey(load_image(_save_dicom(dataset, tmp_path / "mono1.dcm")))
    assert np.array_equal(as_monochrome1, 255 - as_monochrome2)
    _assert_preserves_order(raw, as_monochrome1, inverted=True)


@pytest.mark.parametrize(
    ("name", "frame_count"),
    [("SC_rgb_rle_2frame.dcm", 2), ("examples_ybr_color.dcm", 30), ("rtdose.dcm", 15)],
)
def test_multi_frame_picks_the_requested_frame(name: str, frame_count: int) -> None:
    path = _testdata(name)
    dataset = pydicom.dcmread(path)
    assert int(dataset.NumberOfFrames) == frame_count
    first = load_image(path)
    last = load_image(path, frame=frame_count - 1)
    assert first.image.size == last.image.size == (dataset.Columns, dataset.Rows)
    assert not np.array_equal(_pixels(first), _pixels(last))
    if dataset.SamplesPerPixel == 3 and dataset.BitsAllocated == 8:
        decoded = pixel_array(dataset, index=frame_count - 1)
        assert np.abs(_pixels(last).astype(int) - decoded.astype(int)).max() == 0
    with pytest.raises(ImageLoadError, match=rf"{name}.*frame {frame_count}.*{frame_count} frame"):
        load_image(path, frame=frame_count)


def test_enhanced_functional_group_windows_are_used_per_frame(tmp_path: Path) -> None:
    source = _testdata("MR_small.dcm")
    dataset = pydicom.dcmread(source)
    center, width = float(dataset.WindowCenter), float(dataset.WindowWidth)
    single_frame = _grey(load_image(source))
    frame_bytes = dataset.PixelData
    dataset.PixelData = frame_bytes + frame_bytes
    dataset.NumberOfFrames = 2
    del dataset.WindowCenter, dataset.WindowWidth
    narrow_center, narrow_width = center, width / 4

    def voi_group(c: float, w: float) -> Dataset:
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = c, w
        group = Dataset()
        group.FrameVOILUTSequence = Sequence([voi])
        return group

    dataset.PerFrameFunctionalGroupsSequence = Sequence(
        [voi_group(center, width), voi_group(narrow_center, narrow_width)]
    )
    path = _save_dicom(dataset, tmp_path / "enhanced.dcm")
    assert np.array_equal(_grey(load_image(path, frame=0)), single_frame)
    narrow = _grey(load_image(path, frame=1))
    expected = _linear_window(
        _modality_values(pydicom.dcmread(source)), narrow_center, narrow_width
    )
    assert np.abs(narrow - expected).max() <= 1


def test_ybr_colour_matches_rgb_encoding_of_the_same_picture() -> None:
    rgb = _pixels(load_image(_testdata("SC_rgb_dcmtk_+eb+cr.dcm"))).astype(int)
    ybr = _pixels(load_image(_testdata("SC_rgb_dcmtk_+eb+cy+n1.dcm"))).astype(int)
    assert rgb.shape == ybr.shape
    assert np.abs(rgb - ybr).mean() < 6  # both lossy JPEG; a missed YBR->RGB is off by ~100


def test_sixteen_and_32_bit_rgb_scale_to_the_same_8_bit_picture() -> None:
    eight = _pixels(load_image(_testdata("SC_rgb_rle.dcm")))
    for name in ("SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit.dcm"):
        assert np.array_equal(_pixels(load_image(_testdata(name))), eight)


def test_palette_colour_becomes_rgb() -> None:
    path = _testdata("examples_palette.dcm")
    dataset = pydicom.dcmread(path)
    pixels = _pixels(load_image(path))
    assert pixels.shape == (dataset.Rows, dataset.Columns, 3)
    assert (pixels[..., 0] != pixels[..., 1]).any()


# --- privacy ----------------------------------------------------------------------------------


def _exposed_text(loaded: LoadedImage) -> str:
    return " ".join([loaded.name, loaded.describe(), *loaded.metadata, *loaded.metadata.values()])


def test_patient_fields_never_reach_the_loaded_image() -> None:
    path = _testdata("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    patient_name = str(dataset.PatientName)
    assert patient_name
    loaded = load_image(path)
    exposed = _exposed_text(loaded).lower()
    assert patient_name.lower() not in exposed
    for component in (dataset.PatientName.family_name, dataset.PatientName.given_name):
        assert component and component.lower() not in exposed
    assert str(dataset.PatientID).lower() not in exposed
    assert set(loaded.metadata) <= {"modality", "body_part", "view_position"}


def test_file_named_after_the_patient_gets_a_hash_name(tmp_path: Path) -> None:
    source = _testdata("CT_small.dcm")
    dataset = pydicom.dcmread(source)
    leaky = tmp_path / f"{dataset.PatientName.family_name}_{dataset.PatientID}.dcm"
    leaky.write_bytes(source.read_bytes())
    loaded = load_image(leaky)
    assert loaded.name == f"image-{loaded.sha256[:8]}"
    assert dataset.PatientName.family_name.lower() not in _exposed_text(loaded).lower()


def test_encapsulated_cxr_patient_id_is_not_exposed() -> None:
    dataset = pydicom.dcmread(ENCAPSULATED_CXR)
    assert str(dataset.PatientID) not in _exposed_text(load_image(ENCAPSULATED_CXR))


def test_only_safe_tags_reach_metadata_and_describe(tmp_path: Path) -> None:
    dataset = pydicom.dcmread(_testdata("CT_small.dcm"))
    dataset.Modality = "CR"
    dataset.BodyPartExamined = "CHEST"
    dataset.ViewPosition = "PA"
    dataset.StudyDescription = "CHEST PA FOR JOHN"
    loaded = load_image(_save_dicom(dataset, tmp_path / "cr.dcm"))
    assert SAFE_DICOM_TAGS == ("Modality", "BodyPartExamined", "ViewPosition")
    assert loaded.metadata == {"modality": "CR", "body_part": "CHEST", "view_position": "PA"}
    assert loaded.describe() == "CR chest radiograph (PA)"


def test_free_text_in_a_safe_tag_is_dropped(tmp_path: Path) -> None:
    dataset = pydicom.dcmread(_testdata("CT_small.dcm"))
    dataset.BodyPartExamined = "Mr. Smith's chest, 1962-03-01"
    loaded = load_image(_save_dicom(dataset, tmp_path / "odd.dcm"))
    assert "body_part" not in loaded.metadata
    assert "smith" not in _exposed_text(loaded).lower()


# --- content blocks ---------------------------------------------------------------------------


def _block_shapes(path: Path) -> dict[str, dict[str, Any]]:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    data_url = f"data:image/png;base64,{encoded}"
    return {
        "v1-base64": {"type": "image", "base64": encoded, "mime_type": "image/png"},
        "v1-data-url": {"type": "image", "url": data_url},
        "legacy-base64": {
            "type": "image",
            "source_type": "base64",
            "data": encoded,
            "mime_type": "image/png",
        },
        "openai-dict": {"type": "image_url", "image_url": {"url": data_url}},
        "openai-str": {"type": "image_url", "image_url": data_url},
        "path": {"type": "image", "path": str(path)},
        "file-url": {"type": "image", "url": path.resolve().as_uri()},
        "openai-file-url": {"type": "image_url", "image_url": {"url": path.resolve().as_uri()}},
    }


@pytest.mark.parametrize("shape", list(_block_shapes(CXR_PNGS[0])))
def test_every_block_shape_decodes_to_the_file_pixels(shape: str) -> None:
    block = _block_shapes(CXR_PNGS[0])[shape]
    assert is_image_block(block)
    from_block = load_image_block(block)
    from_file = load_image(CXR_PNGS[0])
    assert np.array_equal(_pixels(from_block), _pixels(from_file))
    assert from_block.sha256 == from_file.sha256


def test_dicom_in_a_block_decodes_like_the_file() -> None:
    encoded = base64.b64encode(CT_SLICE.read_bytes()).decode("ascii")
    block = {"type": "image", "base64": encoded, "mime_type": "application/dicom"}
    assert np.array_equal(_pixels(load_image_block(block)), _pixels(load_image(CT_SLICE)))


@pytest.mark.parametrize(
    "block",
    [
        {"type": "text", "text": "hello"},
        {"type": "file", "url": "file:///x.pdf"},
        {"image_url": {"url": "data:image/png;base64,AAAA"}},
    ],
)
def test_non_image_blocks_are_recognised(block: dict[str, Any]) -> None:
    assert not is_image_block(block)
    with pytest.raises(ImageLoadError, match="not an image block"):
        load_image_block(block)


@pytest.mark.parametrize(
    "block",
    [
        {"type": "image", "url": "https://example.org/cxr.png?token=SECRET"},
        {"type": "image_url", "image_url": {"url": "http://example.org/cxr.png?token=SECRET"}},
    ],
)
def test_remote_urls_are_refused_without_leaking_the_query(block: dict[str, Any]) -> None:
    with pytest.raises(ImageLoadError, match="remote image URLs are not fetched") as caught:
        load_image_block(block)
    assert "example.org/cxr.png" in str(caught.value)
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("block", "pattern"),
    [
        (
            {"type": "image", "base64": "not base64 at all!"},
            r"image block 'base64'.*invalid base64",
        ),
        ({"type": "image", "source_type": "base64", "data": "%%%"}, r"'data'.*invalid base64"),
        ({"type": "image", "url": "data:image/png;base64"}, r"data URL.*','"),
        ({"type": "image", "url": "data:image/png;base64,@@@@"}, r"data URL.*invalid base64"),
        ({"type": "image", "file_id": "file-123"}, r"file_id.*base64 or as a local path"),
        ({"type": "image", "url": "s3://bucket/cxr.png"}, r"neither a data: nor a file: URL"),
        ({"type": "image", "url": "file://otherhost/x.png"}, r"otherhost.*only local files"),
        ({"type": "image_url", "image_url": {}}, r"image_url block has no URL"),
        ({"type": "image"}, r"none of 'base64', 'data', 'path' or 'url'"),
    ],
)
def test_bad_blocks_raise_image_load_error(block: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ImageLoadError, match=pattern):
        load_image_block(block)


def test_block_with_missing_path_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "gone.png"
    with pytest.raises(ImageLoadError, match=r"gone\.png.*not found"):
        load_image_block({"type": "image", "path": str(missing)})


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_data_url_round_trip(fmt: str) -> None:
    loaded = load_image(BCCD_JPEG)
    url = image_to_data_url(loaded, fmt)
    assert url.startswith(f"data:image/{fmt.lower()};base64,")
    again = load_image_block({"type": "image_url", "image_url": {"url": url}})
    assert again.image.size == loaded.image.size
    difference = np.abs(_pixels(again).astype(int) - _pixels(loaded).astype(int))
    if fmt == "PNG":
        assert difference.max() == 0
    else:
        assert difference.mean() < 3


def test_data_url_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="'GIF'"):
        image_to_data_url(load_image(BCCD_JPEG), "GIF")


# --- errors -----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match=r"nothere\.png: image file not found"):
        load_image(tmp_path / "nothere.png")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.png: image file is empty"):
        load_image(path)


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("Patient reports cough for three days.\n")
    with pytest.raises(ImageLoadError, match=r"notes\.png: not a recognised image"):
        load_image(path)


@pytest.mark.parametrize("source", [CXR_PNGS[0], BCCD_JPEG], ids=["png", "jpeg"])
def test_truncated_image_fails_on_decode(tmp_path: Path, source: Path) -> None:
    data = source.read_bytes()
    path = tmp_path / f"half{source.suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=rf"half\{source.suffix}:.*truncated or corrupt"):
        load_image(path)


def test_pixel_limit_applies_to_real_images() -> None:
    with Image.open(CXR_PNGS[0]) as source:
        pixel_count = source.width * source.height
    assert load_image(CXR_PNGS[0], max_pixels=pixel_count).image.size
    with pytest.raises(ImageLoadError, match=rf"{CXR_PNGS[0].name}.*over the limit of 1,000"):
        load_image(CXR_PNGS[0], max_pixels=1000)


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    # 60M pixels claimed: over the default limit, under Pillow's own bomb threshold; the data is
    # a few bytes, so decoding would fail with "truncated" instead of the limit message.
    claimed = png_header_only(10_000, 6_000)
    assert DEFAULT_MAX_PIXELS < 10_000 * 6_000
    started = time.perf_counter()
    with pytest.raises(ImageLoadError, match=r"10000x6000 = 60,000,000 pixels, over the limit"):
        load_image(claimed)
    assert time.perf_counter() - started < 1.0


def test_pillow_decompression_bomb_is_an_image_load_error() -> None:
    with pytest.raises(ImageLoadError, match="too large to decode safely"):
        load_image(png_header_only(40_000, 40_000), max_pixels=10**10)


def test_too_many_pixels_is_image_too_large_with_the_counts() -> None:
    with pytest.raises(ImageTooLargeError) as ours:
        load_image(png_header_only(10_000, 6_000), max_pixels=1_000_000)
    assert (ours.value.pixels, ours.value.max_pixels) == (60_000_000, 1_000_000)
    with pytest.raises(ImageTooLargeError) as pillows:  # Pillow's own bomb guard fires first
        load_image(png_header_only(40_000, 40_000), max_pixels=10**10)
    assert pillows.value.pixels == 40_000 * 40_000


def test_dicom_pixel_limit_is_checked_before_decoding() -> None:
    with pytest.raises(ImageLoadError, match=r"ct_blank_slice\.dcm.*512x512.*over the limit"):
        load_image(CT_SLICE, max_pixels=512 * 511)


def test_dicom_with_pixel_data_removed(tmp_path: Path) -> None:
    dataset = pydicom.dcmread(_testdata("CT_small.dcm"))
    del dataset.PixelData
    path = _save_dicom(dataset, tmp_path / "nopixels.dcm")
    with pytest.raises(ImageLoadError, match=r"nopixels\.dcm: DICOM file has no pixel data"):
        load_image(path)


def test_structured_report_has_no_pixels() -> None:
    with pytest.raises(ImageLoadError, match=r"test-SR\.dcm: DICOM file has no pixel data.*SR"):
        load_image(_testdata("test-SR.dcm"))


def test_truncated_dicom_pixel_data() -> None:
    with pytest.raises(ImageLoadError, match=r"MR_truncated\.dcm: cannot decode DICOM pixel data"):
        load_image(_testdata("MR_truncated.dcm"))


def test_dicom_compression_without_decoder_names_the_fix() -> None:
    # JPEG-LS needs pylibjpeg/pyjpegls, which medgraph does not install.
    with pytest.raises(ImageLoadError, match=r"JPEG-LS.*install a decoder"):
        load_image(_testdata("MR_small_jpeg_ls_lossless.dcm"))


def test_bad_arguments() -> None:
    with pytest.raises(ImageLoadError, match="frame must be 0 or more"):
        load_image(CT_SLICE, frame=-1)
    with pytest.raises(ImageLoadError, match="max_pixels must be a positive"):
        load_image(CT_SLICE, max_pixels=0)
    with pytest.raises(ImageLoadError, match="cannot load an image from a int"):
        load_image(42)  # type: ignore[arg-type]
    with pytest.raises(ImageLoadError, match=r"frame 1 requested.*1 frame"):
        load_image(CT_SLICE, frame=1)


# --- robustness -------------------------------------------------------------------------------

_MAGIC_PREFIXES = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF89a",
    b"II*\x00",
    b"BM",
    b"P6\n",
    b"\x00" * 128 + b"DICM",
]


def _assert_loads_or_image_load_error(call: Callable[[], LoadedImage]) -> None:
    try:
        loaded = call()
    except ImageLoadError:
        return
    assert isinstance(loaded, LoadedImage)
    assert loaded.image.mode == "RGB"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(_MAGIC_PREFIXES), tail=st.binary(max_size=2048))
def test_arbitrary_bytes_load_or_raise_image_load_error(prefix: bytes, tail: bytes) -> None:
    _assert_loads_or_image_load_error(lambda: load_image(prefix + tail, max_pixels=1_000_000))


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=1, max_value=4000), flip=st.integers(min_value=0, max_value=255))
def test_damaged_real_files_load_or_raise_image_load_error(cut: int, flip: int) -> None:
    for source in (CXR_PNGS[0], _testdata("CT_small.dcm"), BCCD_JPEG):
        data = bytearray(source.read_bytes())
        data[(cut * 37) % len(data)] ^= flip
        damaged = bytes(data[: len(data) - cut])
        _assert_loads_or_image_load_error(partial(load_image, damaged))


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_base64_blocks_load_or_raise_image_load_error(text: str) -> None:
    block = {"type": "image", "base64": text}
    _assert_loads_or_image_load_error(lambda: load_image_block(block))


def test_loaded_image_from_bytes_is_reusable_after_source_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "copy.png"
    path.write_bytes(CXR_PNGS[1].read_bytes())
    loaded = load_image(path)
    path.unlink()
    buffer = io.BytesIO()
    loaded.image.save(buffer, format="PNG")
    assert buffer.getvalue()
