"""Settings of the HTTP server (the ``server`` section of ``medgraph.Settings``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ServerSettings(BaseModel):
    """Host, port, auth and limits of ``medgraph serve``.

    Environment: ``MEDGRAPH_SERVER__PORT=8080``; API keys come from ``MEDGRAPH_API_KEYS``.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
