"""Fetch-and-verify: PubMedQA from a local stand-in for its public host, into a fresh cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgraph.datasets import (
    PUBMEDQA_CORPUS,
    PUBMEDQA_DEV,
    PUBMEDQA_PQAL,
    DataIntegrityError,
    DataUnavailableError,
    data_cache_dir,
    ensure_pubmedqa,
    sha256_of,
)
from medgraph.settings import Settings
from tests.public_mirror import pubmedqa_sources, serve_files
from tests.support import free_port


@pytest.fixture(scope="module")
def sources(data_dir: Path) -> dict[str, bytes]:
    return pubmedqa_sources(data_dir)


def test_fetches_once_verified_into_the_cache(
    sources: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    with serve_files(sources, tmp_path / "served") as url:
        monkeypatch.setenv("MEDGRAPH_DATA_MIRROR", url)
        folder = ensure_pubmedqa(cache)
    assert folder == cache / "pubmedqa"
    assert sha256_of(folder / "corpus.jsonl") == PUBMEDQA_CORPUS.sha256
    assert sha256_of(folder / "dev.jsonl") == PUBMEDQA_DEV.sha256
    lines = (folder / "dev.jsonl").read_text(encoding="utf-8").split("\n")
    dev = [json.loads(line) for line in lines if line]
    assert len(dev) == 500 and {"pmid", "question", "final_decision"} <= set(dev[0])
    # The server is gone: the verified cache answers without the network.
    assert ensure_pubmedqa(cache) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["corpus.jsonl", "dev.jsonl"]


def test_a_corrupted_download_is_refused_and_nothing_is_kept(
    sources: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tampered = dict(sources)
    raw = json.loads(sources[PUBMEDQA_PQAL.mirror_path])
    first = next(iter(raw.values()))
    first["CONTEXTS"][0] = first["CONTEXTS"][0].replace("cell", "cel", 1)
    tampered[PUBMEDQA_PQAL.mirror_path] = json.dumps(raw).encode("utf-8")
    cache = tmp_path / "cache"
    with serve_files(tampered, tmp_path / "served") as url:
        monkeypatch.setenv("MEDGRAPH_DATA_MIRROR", url)
        with pytest.raises(DataIntegrityError, match=r"pubmedqa/corpus\.jsonl.*expected"):
            ensure_pubmedqa(cache)
    assert not cache.exists() or not any(cache.rglob("*"))


def test_a_truncated_download_is_refused(
    sources: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = dict(sources)
    cut[PUBMEDQA_PQAL.mirror_path] = sources[PUBMEDQA_PQAL.mirror_path][:5000]
    with serve_files(cut, tmp_path / "served") as url:
        monkeypatch.setenv("MEDGRAPH_DATA_MIRROR", url)
        with pytest.raises(DataIntegrityError, match="not valid JSON"):
            ensure_pubmedqa(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_damaged_cached_file_is_fetched_again(
    sources: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    with serve_files(sources, tmp_path / "served") as url:
        monkeypatch.setenv("MEDGRAPH_DATA_MIRROR", url)
        folder = ensure_pubmedqa(cache)
        (folder / "dev.jsonl").write_text("{}\n")
        ensure_pubmedqa(cache)
    assert sha256_of(folder / "dev.jsonl") == PUBMEDQA_DEV.sha256


def test_offline_without_data_names_what_is_missing_and_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDGRAPH_DATA_MIRROR", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(DataUnavailableError) as refused:
        ensure_pubmedqa(tmp_path / "cache", timeout=5)
    message = str(refused.value)
    assert "pubmedqa/ori_pqal.json" in message and "github.com/pubmedqa/pubmedqa" in message
    assert not (tmp_path / "cache").exists()


def test_settings_data_defaults_to_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDGRAPH_DATA", raising=False)
    monkeypatch.delenv("MEDGRAPH_DATA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Settings().data == tmp_path / "xdg" / "medgraph" / "data"
    monkeypatch.setenv("MEDGRAPH_DATA_CACHE", str(tmp_path / "mine"))
    assert data_cache_dir() == Settings().data == tmp_path / "mine"


def test_make_data_command_fetches_or_exits_2(
    sources: dict[str, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from medgraph.datasets import main

    monkeypatch.setenv("MEDGRAPH_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MEDGRAPH_DATA_MIRROR", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("medgraph: error: PubMedQA (pubmedqa/corpus.jsonl")
    with serve_files(sources, tmp_path / "served") as url:
        monkeypatch.setenv("MEDGRAPH_DATA_MIRROR", url)
        main()
    assert f"PubMedQA verified in {tmp_path / 'cache' / 'pubmedqa'}" in capsys.readouterr().out
