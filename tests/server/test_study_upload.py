"""A zip of one DICOM study is accepted where images are (data URL), checked before use."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import pytest

from medgraph.server.errors import ApiError
from medgraph.server.limits import save_data_url_image
from tests.dicom_series import write_series


def _zip_url(members: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return "data:application/zip;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_study_zip_is_saved_and_unsafe_zips_are_refused(tmp_path: Path) -> None:
    series = write_series(tmp_path / "ct", slices=40, rows=16, columns=16)
    members = {f"ct/{p.name}": p.read_bytes() for p in sorted(series.iterdir())}
    saved = save_data_url_image(_zip_url(members), tmp_path, 1, max_pixels=10_000)
    assert saved.name == "study-1.zip" and zipfile.is_zipfile(saved)
    with pytest.raises(ApiError) as refused:
        save_data_url_image(_zip_url({"../up.dcm": b"x"}), tmp_path, 2, max_pixels=10_000)
    assert refused.value.status == 400 and "path traversal" in str(refused.value)
    assert str(tmp_path) not in str(refused.value)
