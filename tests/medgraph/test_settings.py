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


def test_preset_sits_under_toml_environment_and_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    full = Settings.preset("full").models
    assert (full.engine, full.image_model) == ("transformers", "google/medgemma-4b-it")

    (tmp_path / "medgraph.toml").write_text('[models]\nimage_model = "/toml/image"\n')
    from_toml = Settings.preset("full").models
    assert from_toml.image_model == "/toml/image"  # TOML beats the preset...
    assert from_toml.text_model == "google/medgemma-27b-text-it"  # ...field by field

    monkeypatch.setenv("MEDGRAPH_MODELS__TEXT_MODEL", "/env/text")
    monkeypatch.setenv("MEDGRAPH_MODELS__IMAGE_MODEL", "/env/image")
    from_env = Settings.preset("full")
    assert isinstance(from_env, Settings) and type(from_env) is Settings
    assert (from_env.models.text_model, from_env.models.image_model) == ("/env/text", "/env/image")
    assert from_env.models.engine == "transformers"  # the preset still fills the rest

    explicit = Settings.preset("full", models={"text_model": "/kwarg/text"}).models
    assert explicit.text_model == "/kwarg/text"  # explicit overrides beat the environment
    assert explicit.image_model == "/env/image"
    assert explicit.engine == "transformers"


def test_cli_preset_sits_under_environment_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from medgraph.cli import main

    def doctor_models(*args: str) -> dict[str, str]:
        with pytest.raises(SystemExit) as exited:
            main(["doctor", "--json", *args])
        assert exited.value.code in (0, None)
        report = json.loads(capsys.readouterr().out)
        return {role["role"]: role["model"] for role in report["roles"]}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDGRAPH_MODELS__TEXT_MODEL", "/env/text")
    assert doctor_models("--preset", "full") == {
        "image": "google/medgemma-4b-it",
        "text": "/env/text",
    }
    flagged = doctor_models("--preset", "full", "--text-model", "/flag/text")
    assert flagged["text"] == "/flag/text"
    with pytest.raises(SystemExit) as exited:
        main(["doctor", "--preset", "huge"])
    assert exited.value.code == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
