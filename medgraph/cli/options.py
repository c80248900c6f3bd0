"""Settings from CLI options: flags override the environment and the TOML file."""

from __future__ import annotations

from typing import Any

from medgraph.settings import Settings


def settings_from_options(
    *,
    model: str | None = None,
    image_model: str | None = None,
    text_model: str | None = None,
    index: str | None = None,
) -> Settings:
    """Settings with the common ``--model``/``--image-model``/``--text-model``/``--index`` applied.

    ``--model none`` selects the extractive engine; ``--model X`` sets both roles to ``X``.
    """
    settings = Settings()
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
