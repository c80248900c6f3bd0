"""One settings object for the whole framework, read from ``MEDGRAPH_*`` environment variables.

Each package owns its section (``models`` from agents, ``knowledge`` from knowledge); nested fields
use a double underscore: ``MEDGRAPH_MODELS__TEXT_MODEL=/models/medgemma-27b``. An optional TOML file
(``MEDGRAPH_CONFIG`` or ``medgraph.toml`` in the working directory) supplies defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from medgraph.agents.config import ModelSettings
from medgraph.datasets import data_cache_dir
from medgraph.errors import ConfigurationError
from medgraph.graphs.config import GraphSettings, ResearchSettings
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.server.config import ServerSettings


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
        default_factory=data_cache_dir,
        description="Folder with the datasets (MEDGRAPH_DATA); default: the user's data cache.",
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
        """Settings for a named preset (see :data:`PRESETS`), applied under everything else.

        Precedence, highest first: ``overrides`` > ``MEDGRAPH_*`` environment > TOML file > the
        preset > defaults. So ``MEDGRAPH_MODELS__TEXT_MODEL`` still picks the text model under
        ``Settings.preset("full")``.
        """
        if name not in PRESETS:
            raise ConfigurationError(
                f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}"
            )
        preset_values = PRESETS[name]

        class _UnderPreset(cls):  # type: ignore[valid-type,misc]
            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                preset_source = InitSettingsSource(settings_cls, init_kwargs=preset_values)
                return (
                    init_settings,
                    env_settings,
                    TomlConfigSettingsSource(settings_cls),
                    preset_source,
                )

        # Sources are merged section by section, so a single field set in the environment or the
        # TOML file keeps the rest of the preset's section.
        resolved = _UnderPreset(**overrides)
        fields = {name: getattr(resolved, name) for name in cls.model_fields}
        return cls.model_construct(_fields_set=resolved.model_fields_set, **fields)


PRESETS: dict[str, dict[str, Any]] = {
    "offline": {"models": {"engine": "extractive"}},
    "single-gpu": {
        "models": {
            "engine": "transformers",
            "image_model": "google/medgemma-4b-it",
            "text_model": "google/medgemma-4b-it",
        }
    },
    "full": {
        "models": {
            "engine": "transformers",
            "image_model": "google/medgemma-4b-it",
            "text_model": "google/medgemma-27b-text-it",
        }
    },
    "remote": {"models": {"engine": "openai"}},
}
"""Named starting points: values that sit under the TOML file, the environment and overrides."""
