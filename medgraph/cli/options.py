"""The model and index options every command shares, and the settings they give: flags override
the environment and the TOML file."""

from __future__ import annotations

from typing import Any

import typer

from medgraph.settings import PRESETS, Settings

ModelOption = typer.Option(None, "--model", help="'none' (extractive), a Hub id or a folder.")
ImageModelOption = typer.Option(None, "--image-model", help="Image reader (Hub id or folder).")
TextModelOption = typer.Option(None, "--text-model", help="Text reasoner (Hub id or folder).")
IndexOption = typer.Option(None, "--index", help="Index folder (default .medgraph/index).")
PresetOption = typer.Option(
    None,
    "--preset",
    help=f"Start from a preset ({', '.join(PRESETS)}); the environment, medgraph.toml and the "
    "other flags override it.",
)


def settings_from_options(
    *,
    model: str | None = None,
    image_model: str | None = None,
    text_model: str | None = None,
    index: str | None = None,
    preset: str | None = None,
) -> Settings:
    """Settings from the shared flags: --preset, --model, --image-model, --text-model, --index.

    ``--preset`` sits under the environment and the TOML file; the other flags sit above both.
    ``--model none`` selects the extractive engine; ``--model X`` sets both roles to ``X``.
    """
    settings = Settings.preset(preset) if preset is not None else Settings()
    models: dict[str, Any] = {}
    if model is not None:
        if model.lower() == "none":
            models["engine"] = "extractive"
        else:
            models.update(image_model=model, text_model=model)
    if image_model is not None:
        models["image_model"] = image_model
    if text_model is not None:
        models["text_model"] = text_model
    if models:
        settings.models = settings.models.model_copy(update=models)
    if index is not None:
        from pathlib import Path

        settings.knowledge = settings.knowledge.model_copy(update={"index_dir": Path(index)})
    return settings
