"""One settings object for the whole framework, read from ``MEDGRAPH_*`` environment variables.

Each package owns its section (``models`` from agents, ``knowledge`` from knowledge); nested fields
use a double underscore: ``MEDGRAPH_MODELS__TEXT_MODEL=/models/medgemma-27b``. An optional TOML file
(``MEDGRAPH_CONFIG`` or ``medgraph.toml`` in the working directory) supplies defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from medgraph.agents.config import ModelSettings
from medgraph.errors import ConfigurationError
from medgraph.graphs.config import GraphSettings, ResearchSettings
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.server.config import ServerSettings

PresetName = Literal["offline", "single-gpu", "full", "remote"]


def _default_data_dir() -> Path:
    """``MEDGRAPH_DATA`` if set, else ``../shared/data`` beside the working directory."""
    return Path("../shared/data")


class Settings(BaseSettings):
    """All medgraph settings. Construct directly, from the environment, or with a preset."""

    model_config = SettingsConfigDict(
        env_prefix="MEDGRAPH_",
        env_nested_delimiter="__",
        extra="ignore",
        toml_file=os.environ.get("MEDGRAPH_CONFIG", "medgraph.toml"),
    )

    models: ModelSettings = Field(default_factory=ModelSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    graph: GraphSettings = Field(default_factory=GraphSettings)
    research: ResearchSettings = Field(default_factory=ResearchSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    data: Path = Field(
        default_factory=_default_data_dir,
        description="Folder with the shared datasets (MEDGRAPH_DATA).",
    )
    home: Path = Field(default=Path(".medgraph"), description="Checkpoints and caches.")

    @property
    def checkpoint_path(self) -> Path:
        """The SQLite file that keeps conversation threads across runs."""
        return self.home / "checkpoints.sqlite"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init arguments beat the environment, which beats the TOML file."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Settings:
        """Settings for a named preset: offline, single-gpu, full or remote."""
        presets: dict[str, dict[str, Any]] = {
            "offline": {"engine": "extractive"},
            "single-gpu": {
                "engine": "transformers",
                "image_model": "google/medgemma-4b-it",
                "text_model": "google/medgemma-4b-it",
            },
            "full": {
                "engine": "transformers",
                "image_model": "google/medgemma-4b-it",
                "text_model": "google/medgemma-27b-text-it",
            },
            "remote": {"engine": "openai"},
        }
        if name not in presets:
            raise ConfigurationError(
                f"unknown preset {name!r}; choose one of: {', '.join(sorted(presets))}"
            )
        settings = cls(**overrides)
        settings.models = settings.models.model_copy(update=presets[name])
        return settings
