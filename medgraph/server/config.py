"""Settings of the HTTP server (the ``server`` section of ``medgraph.Settings``)."""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from medgraph.errors import ConfigurationError

API_KEYS_ENV = "MEDGRAPH_API_KEYS"
"""Comma-separated API keys; when set, every ``/v1`` request needs ``Authorization: Bearer``."""

MIN_KEY_LENGTH = 12
_KEY = re.compile(r"[!-~]+")  # printable ASCII, no spaces: what a Bearer header can carry


def _split_commas(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]`` (environment variables hold lists as comma-separated text)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


INGEST_KEYS_ENV = "MEDGRAPH_INGEST_KEYS"
"""Comma-separated keys that may also upload literature (``POST /v1/ingest``)."""


def _api_keys_from_env() -> str | None:
    """The raw ``MEDGRAPH_API_KEYS`` text (checked by the field validator), None when unset."""
    return os.environ.get(API_KEYS_ENV)


def _ingest_keys_from_env() -> str | None:
    """The raw ``MEDGRAPH_INGEST_KEYS`` text, None when unset."""
    return os.environ.get(INGEST_KEYS_ENV)


def parse_api_keys(value: Any) -> list[Any]:
    """The key list of ``value`` (comma-separated text or a list); raise ValueError when a key
    list was given but holds no key, or a key is malformed (fail closed, never "auth off")."""
    if value is None:
        return []
    given_as_text = isinstance(value, str)
    keys = _split_commas(value)
    if given_as_text and not keys:
        raise ValueError(
            f"the API key list {value!r} holds no key; give comma-separated keys of at least "
            f"{MIN_KEY_LENGTH} characters, or unset it to serve without auth"
        )
    for key in keys:
        text = key.get_secret_value() if isinstance(key, SecretStr) else str(key)
        if len(text) < MIN_KEY_LENGTH or not _KEY.fullmatch(text):
            raise ValueError(
                f"API key number {keys.index(key) + 1} is malformed: keys need at least "
                f"{MIN_KEY_LENGTH} printable ASCII characters with no spaces or commas"
            )
    return list(keys)


class ServerSettings(BaseModel):
    """Host, port, auth, limits, connection deadlines and CORS of ``medgraph serve``.

    Environment: ``MEDGRAPH_SERVER__PORT=8080``, ``MEDGRAPH_SERVER__MAX_CONCURRENT_GENERATIONS=2``,
    ``MEDGRAPH_SERVER__HEADER_TIMEOUT_SECONDS=5``,
    ``MEDGRAPH_SERVER__CORS_ORIGINS=https://a.example,https://b.example``; API keys come from
    ``MEDGRAPH_API_KEYS`` (comma-separated) or ``MEDGRAPH_SERVER__API_KEYS``.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # NoDecode: environment values are comma-separated text, not JSON.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=_api_keys_from_env,
        validate_default=True,
        description="Accepted bearer keys (MEDGRAPH_API_KEYS); unset = no auth (local use). "
        "A set but empty or malformed list is an error.",
    )
    ingest_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=_ingest_keys_from_env,
        validate_default=True,
        description="Keys that may read and also upload literature (MEDGRAPH_INGEST_KEYS); the "
        "keys of api_keys are readers only. With auth on and no ingest key, nobody can upload.",
    )
    thread_secret: SecretStr | None = Field(
        default=None,
        description="Server secret of the keyed hash (HMAC) that namespaces conversation threads "
        "per API key; default: a random secret kept in <home>/server-secret. Workers sharing a "
        "checkpoint database must share it.",
    )
    allow_open: bool = Field(
        default=False,
        description="Serve without API keys on a non-loopback host (anyone who can reach it may "
        "chat and upload); without it that is a startup error.",
    )
    upload_visibility: Literal["private", "shared"] = Field(
        default="private",
        description="Who retrieves uploaded literature: 'private' = only the key that uploaded "
        "it (the operator's corpus is seen by all), 'shared' = every key.",
    )
    openapi: bool = Field(
        default=False,
        description="Serve the API schema at /v1/openapi.json (behind the API keys); no docs "
        "page (Swagger UI would load from a CDN).",
    )
    max_body_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        description="Largest request body (chat payloads with base64 images, ingest uploads).",
    )
    max_message_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="Most text (UTF-8 bytes) in all messages of one chat request, images aside.",
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
    max_ingest_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1024, description="Largest file one ingest job takes."
    )
    max_ingest_documents: int = Field(
        default=2000, ge=1, description="Most documents one ingest job may add or change."
    )
    max_ingest_chunks: int = Field(
        default=5000, ge=1, description="Most new passages (chunks) one ingest job may embed."
    )
    max_ingest_jobs_per_key: int = Field(
        default=2, ge=1, description="Ingest jobs one key may have waiting or running."
    )
    max_ingest_bytes_per_key: int = Field(
        default=50 * 1024 * 1024,
        ge=1024,
        description="Bytes one key may upload for ingest while the server runs.",
    )
    max_search_results: int = Field(default=50, ge=1, description="Largest k of /v1/search.")
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Time a client has to send a request's line and headers, from the "
        "connection's opening (or a kept-alive request's first byte); then 408 and closed.",
    )
    body_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Time a client has to send a request's body, from the end of its headers; "
        "then the connection is closed. Raise it for large uploads over slow links.",
    )
    keep_alive_seconds: int = Field(
        default=5, ge=1, description="How long an idle kept-alive connection stays open."
    )
    max_connections: int = Field(
        default=256,
        ge=1,
        description="Connections one server process serves at once; a request arriving on a "
        "further connection is answered 503 and its connection closed.",
    )

    @field_validator("api_keys", "ingest_keys", mode="before")
    @classmethod
    def _checked_keys(cls, value: Any) -> list[Any]:
        return parse_api_keys(value)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    def generation_limit(self, engine: str) -> int:
        """Concurrent generations for ``engine`` (the setting, else the engine's safe default)."""
        if self.max_concurrent_generations is not None:
            return self.max_concurrent_generations
        return 1 if engine == "transformers" else 4

    def check_exposure(self) -> None:
        """Fail closed: no keys on a host other than loopback needs ``allow_open``.

        Raises ConfigurationError naming the host and both fixes.
        """
        if self.key_values() or self.allow_open or _is_loopback(self.host):
            return
        raise ConfigurationError(
            f"refusing to serve without API keys on {self.host}, which is reachable from other "
            "machines; set MEDGRAPH_API_KEYS, bind to 127.0.0.1, or pass --allow-open "
            "(MEDGRAPH_SERVER__ALLOW_OPEN=true) to serve it open anyway"
        )

    def key_values(self) -> list[str]:
        """Every accepted key (readers and ingesters) as plain strings."""
        keys = [key.get_secret_value() for key in [*self.api_keys, *self.ingest_keys]]
        return list(dict.fromkeys(keys))

    def ingest_key_values(self) -> list[str]:
        """The keys that may upload literature, as plain strings."""
        return [key.get_secret_value() for key in self.ingest_keys]


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost`` or a loopback address)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False
