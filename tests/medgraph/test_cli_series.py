"""``medgraph ask --image`` with DICOM studies, from a fresh process: a CT series folder read by
the tiny MedGemma checkpoint, a prior/current pair, a refused zip; no planted PHI comes out."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.dicom_series import PlantedPHI, write_cxr_pair, write_series
from tests.medgraph.test_cli_assistant import run_cli
from tests.support import shared_data_dir


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of 15 PubMedQA abstracts, built by ``medgraph ingest`` (under a minute)."""
    root = tmp_path_factory.mktemp("series-cli-index")
    corpus = shared_data_dir() / "pubmedqa" / "corpus.jsonl"
    with corpus.open() as source:
        lines = [next(source) for _ in range(15)]
    (root / "small.jsonl").write_text("".join(lines))
    result = run_cli("ingest", str(root / "small.jsonl"), "--index", str(root / "index"), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "index"


def _stored_text(home: Path) -> str:
    """Every byte medgraph wrote under its home (checkpoint database and its WAL), as text."""
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name.startswith("checkpoints.sqlite") for p in files)
    return b"".join(p.read_bytes() for p in files).decode("latin-1")


def test_ct_series_folder_goes_through_the_series_reader(
    tmp_path: Path, small_index: Path, tiny_multimodal: str
) -> None:
    phi = PlantedPHI()
    series = write_series(tmp_path / "in" / phi.file_stem, slices=120, phi=phi, missing=[30])
    result = run_cli(
        "ask",
        "What does this CT show?",
        "--image",
        str(series),
        "--model",
        tiny_multimodal,
        "--index",
        str(small_index),
        "--json",
        cwd=tmp_path,
        MEDGRAPH_MODELS__MAX_NEW_TOKENS="24",
        MEDGRAPH_GRAPH__MAX_TOOL_STEPS="1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert "read_images" in data["route"]
    (finding,) = data["findings"]
    assert finding["kind"] == "series" and finding["image_id"] == "series-1"
    assert finding["model"] == tiny_multimodal
    assert "119 slices (85 shown)" in finding["scope"]
    assert "slices 1-119 of 119, shown as SLICE 1-85" in finding["scope"]
    for value in [*phi.values(), str(tmp_path / "in")]:
        for output in (result.stdout, result.stderr, _stored_text(tmp_path / "home")):
            assert value.lower() not in output.lower(), value


def test_prior_current_pair_is_a_comparison_and_a_bad_zip_is_one_line(
    tmp_path: Path, small_index: Path
) -> None:
    pngs = sorted((shared_data_dir() / "images" / "nih-cxr14").glob("*.png"))
    current, prior = write_cxr_pair(tmp_path / "pair", pngs[:2])
    index = str(small_index)
    result = run_cli(
        "ask",
        "Has the chest changed?",
        "--image",
        str(current),
        "--image",
        str(prior),
        "--model",
        "none",
        "--index",
        index,
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["kind"] == "comparison"
    assert finding["scope"] == "comparison: prior img-2 with current img-1"
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../outside.dcm", b"x")
    refused = run_cli(
        "ask", "What does this show?", "--image", str(evil), "--model", "none", "--index", index,
        cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "path traversal" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
