"""DICOM series: ordering, geometry checks, HU windowing, sampling, folder and zip input limits."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from medgraph.agents.series import (
    CT_WINDOWS,
    MR_PERCENTILES,
    ct_windows_rgb,
    load_study,
    order_slices,
    read_header,
    sample_indices,
)
from medgraph.agents.study_input import study_files
from medgraph.errors import (
    ImageLoadError,
    SeriesGeometryError,
    StudyTooLargeError,
    UnsafeArchiveError,
)
from tests.dicom_series import (
    AIR_HU,
    BONE_HU,
    SOFT_TISSUE_HU,
    PlantedPHI,
    phantom_slice,
    write_series,
)


def _headers(folder: Path) -> list:  # type: ignore[type-arg]
    return [h for h in (read_header(f) for f in study_files(folder)) if h is not None]


def _expected_rgb(hu: float) -> tuple[int, ...]:
    return tuple(int(np.rint(np.clip((hu - lo) / (hi - lo), 0, 1) * 255)) for lo, hi in CT_WINDOWS)


def test_shuffled_files_are_ordered_along_the_slice_normal(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ct", slices=40, spacing=2.5, seed=3)
    headers = _headers(folder)
    # the files on disk are shuffled: their name order is not the slice order
    assert [h.instance for h in headers] != sorted(h.instance for h in headers)  # type: ignore[type-var]
    ordered = order_slices(headers)
    assert [h.instance for h in ordered.headers] == list(range(1, 41))
    assert ordered.positions_mm == [i * 2.5 for i in range(40)]
    assert ordered.spacing_mm == 2.5 and ordered.orientation == "axial" and not ordered.warnings


def test_reversed_normal_orders_by_projection_not_by_z(tmp_path: Path) -> None:
    # Row x column = (0, 0, -1): projected positions fall as z rises, so the order flips.
    folder = write_series(tmp_path / "ct", slices=40, orientation=(0, 1, 0, 1, 0, 0))
    ordered = order_slices(_headers(folder))
    assert [h.instance for h in ordered.headers] == list(range(40, 0, -1))


def test_instance_number_is_the_fallback_order(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ct", slices=40, with_positions=False, missing=[12])
    ordered = order_slices(_headers(folder))
    assert [h.instance for h in ordered.headers] == [i for i in range(1, 41) if i != 13]
    assert ordered.positions_mm is None
    assert any("missing between slice 12 and 13" in w for w in ordered.warnings)


def test_missing_and_duplicate_slices_are_named(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ct", slices=50, missing=[30], duplicate=[10])
    ordered = order_slices(_headers(folder), label="series 1")
    assert len(ordered.headers) == 49  # 50 - 1 missing; the duplicate is dropped
    assert any("1 duplicate slice(s) at slice 11" in w for w in ordered.warnings)
    assert any(
        "missing between slice 30 and 31 (gap 5, expected 2.5)" in w for w in ordered.warnings
    )


def test_mixed_orientations_are_an_error(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ct", slices=40, mixed_orientation_at=7)
    with pytest.raises(SeriesGeometryError, match="mixes 2 slice orientations"):
        order_slices(_headers(folder))


def test_ct_windows_match_the_medgemma_ranges() -> None:
    assert CT_WINDOWS == ((-1024, 1024), (-135, 215), (0, 80))
    hu = np.array([[AIR_HU, SOFT_TISSUE_HU], [BONE_HU, -2000]], dtype=np.float32)
    rgb = ct_windows_rgb(hu)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    for value, pixel in zip(hu.ravel(), rgb.reshape(-1, 3), strict=True):
        assert tuple(pixel) == _expected_rgb(float(value))
    assert tuple(rgb[1, 1]) == (0, 0, 0) and tuple(rgb[1, 0]) == (215, 255, 255)


def test_prepared_ct_slices_carry_hounsfield_windows(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ct", slices=40, rows=48, columns=48)
    (study,) = load_study(folder)
    (series,) = study.series
    # slice 1 is the phantom at z = 0; the rescale (intercept -1024) must give HU back
    expected = ct_windows_rgb(phantom_slice(48, 48, 0.0).astype(np.float32))
    assert np.array_equal(np.asarray(series.images[0]), expected)
    assert series.windowing.startswith("CT windows")


def test_mr_gets_one_percentile_window_per_volume(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "mr", slices=40, rows=32, columns=32, modality="MR")
    (study,) = load_study(folder)
    (series,) = study.series
    raw = np.stack([phantom_slice(32, 32, i / 39).astype(np.float32) + 1024 for i in range(40)])
    low, high = np.percentile(raw[:, ::4, ::4].ravel(), MR_PERCENTILES)
    first = np.asarray(series.images[0])[:, :, 0].astype(float)
    expected = np.rint(np.clip((raw[0] - low) / (high - low), 0, 1) * 255)
    assert np.array_equal(first, expected)


@pytest.mark.parametrize("count", [40, 85, 86, 120, 300])
def test_sampling_is_even_keeps_both_ends_and_is_capped(count: int) -> None:
    picked = sample_indices(count, 85)
    assert len(picked) == min(count, 85)
    assert picked[0] == 0 and picked[-1] == count - 1
    steps = np.diff(picked)
    assert (steps >= 1).all() and steps.max() - steps.min() <= 1


def test_series_is_sampled_to_the_cap_with_positions(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ct", slices=120, rows=32, columns=32)
    (study,) = load_study(folder, max_slices=85)
    (series,) = study.series
    assert series.slice_count == 120 and len(series.images) == 85
    assert series.slice_numbers == [i + 1 for i in sample_indices(120, 85)]
    assert series.positions_mm == [(n - 1) * 2.5 for n in series.slice_numbers]
    assert series.describe() == "CT chest axial series, 120 slices (85 shown), 2.5 mm apart"
    (small,) = load_study(folder, max_slices=10)
    assert len(small.series[0].images) == 10


def test_zip_reads_like_the_folder_and_traversal_is_refused(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ct", slices=40, rows=32, columns=32)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in sorted(folder.iterdir()):
            zipped.write(file, f"study/{file.name}")
    (from_zip,) = load_study(archive)
    (from_folder,) = load_study(folder)
    assert [np.asarray(i).tobytes() for i in from_zip.series[0].images] == [
        np.asarray(i).tobytes() for i in from_folder.series[0].images
    ]
    for bad_name in ("../escape.dcm", "/etc/evil.dcm", "study/../../x.dcm", "C:\\evil.dcm"):
        evil = tmp_path / "evil.zip"
        with zipfile.ZipFile(evil, "w") as zipped:
            zipped.write(next(folder.iterdir()), "study/ok.dcm")
            zipped.writestr(bad_name, b"x")
        with pytest.raises(UnsafeArchiveError, match="path traversal"):
            load_study(evil)
    assert not (tmp_path.parent / "escape.dcm").exists()


def test_studies_over_the_limits_are_refused_before_reading(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ct", slices=40, rows=32, columns=32)
    size = sum(f.stat().st_size for f in folder.iterdir())
    with pytest.raises(StudyTooLargeError, match="over the study limit"):
        load_study(folder, max_bytes=size - 1)
    with pytest.raises(StudyTooLargeError, match="more than 39 files"):
        load_study(folder, max_files=39)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("big.bin", b"\0" * 5_000_000)  # compresses to a few kB
    with pytest.raises(StudyTooLargeError):
        load_study(archive, max_bytes=1_000_000)


def test_non_dicom_files_are_skipped_and_an_empty_study_is_an_error(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ct", slices=40, rows=32, columns=32)
    (folder / "notes.txt").write_text("not an image")
    (study,) = load_study(folder)
    assert study.series[0].slice_count == 40
    assert "1 file(s) that are not DICOM images were skipped" in study.warnings
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ImageLoadError, match="no DICOM images"):
        load_study(empty)


def test_phi_tags_stay_out_of_everything_prepared(tmp_path: Path) -> None:
    phi = PlantedPHI()
    folder = write_series(tmp_path / phi.file_stem, slices=40, rows=32, columns=32, phi=phi)
    (study,) = load_study(folder)
    series = study.series[0]
    shown = repr(
        (
            series.describe(),
            series.warnings,
            series.windowing,
            series.key,
            study.key,
            study.patient_key,
            [image.describe() for image in study.images],
        )
    )
    for value in phi.values():
        assert value.lower() not in shown.lower()


def test_a_lone_dicom_file_without_pixels_gets_the_loaders_reason(tmp_path: Path) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report = FileDataset(str(tmp_path / "sr.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    report.SOPClassUID = meta.MediaStorageSOPClassUID
    report.Modality = "SR"
    report.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    with pytest.raises(ImageLoadError, match="no pixel data"):
        load_study(tmp_path / "sr.dcm")
