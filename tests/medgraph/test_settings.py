"""Settings: environment, nested sections, presets, TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from medgraph.errors import ConfigurationError
from medgraph.settings import Settings


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDGRAPH_MODELS__TEXT_MODEL", "/models/medgemma-27b")
    monkeypatch.setenv("MEDGRAPH_KNOWLEDGE__INDEX_DIR", "/tmp/my-index")
    monkeypatch.setenv("MEDGRAPH_DATA", "/data/shared")
    settings = Settings()
    assert settings.models.text_model == "/models/medgemma-27b"
    assert settings.knowledge.index_dir == Path("/tmp/my-index")
    assert settings.data == Path("/data/shared")


def test_presets() -> None:
    assert Settings.preset("offline").models.engine == "extractive"
    single = Settings.preset("single-gpu").models
    assert single.image_model == single.text_model == "google/medgemma-4b-it"
    assert Settings.preset("full").models.text_model == "google/medgemma-27b-text-it"
    with pytest.raises(ConfigurationError, match="unknown preset 'huge'"):
        Settings.preset("huge")


def test_toml_file_gives_defaults_that_env_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "medgraph.toml").write_text(
        '[models]\nengine = "openai"\nbase_url = "http://127.0.0.1:8000/v1"\n'
    )
    assert Settings().models.engine == "openai"
    monkeypatch.setenv("MEDGRAPH_MODELS__ENGINE", "extractive")
    assert Settings().models.engine == "extractive"


def test_invalid_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDGRAPH_MODELS__QUANTIZATION", "3bit")
    with pytest.raises(ValueError, match="quantization"):
        Settings()


def test_cli_names_a_bad_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from medgraph.cli import main

    monkeypatch.setenv("MEDGRAPH_SERVER__PORT", "abc")
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--model", "none"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert "server.port (MEDGRAPH_SERVER__PORT='abc')" in error and "valid integer" in error
