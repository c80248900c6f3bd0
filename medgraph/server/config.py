"""Settings of the HTTP server (the ``server`` section of ``medgraph.Settings``)."""

from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

API_KEYS_ENV = "MEDGRAPH_API_KEYS"
"""Comma-separated API keys; when set, every ``/v1`` request needs ``Authorization: Bearer``."""


def _split_commas(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]`` (environment variables hold lists as comma-separated text)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _api_keys_from_env() -> list[SecretStr]:
    return [SecretStr(key) for key in _split_commas(os.environ.get(API_KEYS_ENV, ""))]


class ServerSettings(BaseModel):
    """Host, port, auth, limits and CORS of ``medgraph serve``.

    Environment: ``MEDGRAPH_SERVER__PORT=8080``, ``MEDGRAPH_SERVER__MAX_CONCURRENT_GENERATIONS=2``,
    ``MEDGRAPH_SERVER__CORS_ORIGINS=https://a.example,https://b.example``; API keys come from
    ``MEDGRAPH_API_KEYS`` (comma-separated) or ``MEDGRAPH_SERVER__API_KEYS``.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # NoDecode: environment values are comma-separated text, not JSON.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=_api_keys_from_env,
        description="Accepted bearer keys (MEDGRAPH_API_KEYS); empty = no auth.",
    )
    max_body_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        description="Largest request body (chat payloads with base64 images, ingest uploads).",
    )
    max_upload_bytes: int = Field(
        default=20 * 1024 * 1024,
        ge=1024,
        description="Largest file uploaded through the web page (Gradio's upload limit).",
    )
    max_image_pixels: int = Field(
        default=25_000_000, ge=1, description="Largest width x height of an attached image."
    )
    max_images: int = Field(default=4, ge=0, description="Images per chat request.")
    max_concurrent_generations: int | None = Field(
        default=None,
        ge=1,
        description="Answers generated at once; default 1 for local transformers models, "
        "4 for the extractive and openai engines.",
    )
    queue_wait_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long a request waits for a free generation slot before a 429.",
    )
    retry_after_seconds: int = Field(
        default=5, ge=1, description="Retry-After header sent with a 429 (generation slots full)."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS; empty = CORS off."
    )
    max_search_results: int = Field(default=50, ge=1, description="Largest k of /v1/search.")

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    def generation_limit(self, engine: str) -> int:
        """Concurrent generations for ``engine`` (the setting, else the engine's safe default)."""
        if self.max_concurrent_generations is not None:
            return self.max_concurrent_generations
        return 1 if engine == "transformers" else 4

    def key_values(self) -> list[str]:
        """The API keys as plain strings."""
        return [key.get_secret_value() for key in self.api_keys]
