"""Finding 3 of issue 26: the web page follows the CORS policy of ``/v1``.

Before: with no CORS setting, the page's routes answered a logged-in request from
``Origin: http://localhost:3000`` with ``access-control-allow-origin: http://localhost:3000`` and
``access-control-allow-credentials: true`` (Gradio's own CORS middleware trusts every localhost
origin when the server runs on localhost), and a preflight to ``/gradio_api/queue/join`` from
``http://127.0.0.1:9999`` was allowed with credentials and every method.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from medgraph.assistant import Assistant
from medgraph.server.app import create_app
from medgraph.server.config import ServerSettings
from tests.graphs.support import KeywordIndex, corpus_documents
from tests.server.api_support import running
from tests.server.web_support import extractive_settings

KEY = "cors-page-key-0123456"
ALLOWED = "https://app.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


@contextmanager
def _page(root: Path, cors_origins: list[str]) -> Iterator[str]:
    settings = extractive_settings(root / "home")
    settings.server = ServerSettings(api_keys=[KEY], cors_origins=cors_origins)  # type: ignore[list-item]
    with (
        Assistant(settings, index=KeywordIndex(corpus_documents(5))) as assistant,
        running(create_app(settings, assistant=assistant)) as url,
    ):
        yield url


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio's upload folder inside this test's folder."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-cache"))


@contextmanager
def _logged_in(url: str) -> Iterator[httpx.Client]:
    """A client holding the page's session cookie (logged in with the API key)."""
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/login", data={"username": "me", "password": KEY}).status_code == 200
        yield client


def _no_cors(response: httpx.Response) -> None:
    assert "access-control-allow-origin" not in response.headers, response.headers
    assert "access-control-allow-credentials" not in response.headers, response.headers


def test_without_cors_origins_the_page_allows_no_origin(tmp_path: Path, cache: None) -> None:
    with _page(tmp_path, []) as url, _logged_in(url) as client:
        origin = {"Origin": "http://localhost:3000"}
        config = client.get("/config", headers=origin)
        assert config.status_code == 200  # logged in: the request itself is served
        _no_cors(config)
        _no_cors(client.get("/", headers=origin))
        _no_cors(client.get("/v1/health", headers=origin))
        preflight = client.options(
            "/gradio_api/queue/join", headers={"Origin": "http://127.0.0.1:9999", **PREFLIGHT}
        )
        assert preflight.status_code == 400, preflight.text
        _no_cors(preflight)  # a browser sends nothing without an allow-origin naming it


def test_a_configured_origin_is_allowed_on_the_page_and_api_without_credentials(
    tmp_path: Path, cache: None
) -> None:
    with _page(tmp_path, [ALLOWED]) as url, _logged_in(url) as client:
        for path in ("/gradio_api/queue/join", "/v1/chat/completions"):
            allowed = client.options(path, headers={"Origin": ALLOWED, **PREFLIGHT})
            assert allowed.status_code == 200, allowed.text
            assert allowed.headers["access-control-allow-origin"] == ALLOWED
            assert "access-control-allow-credentials" not in allowed.headers
            other = client.options(path, headers={"Origin": "http://localhost:3000", **PREFLIGHT})
            assert other.status_code == 400
            _no_cors(other)
        config = client.get("/config", headers={"Origin": ALLOWED})
        assert config.headers["access-control-allow-origin"] == ALLOWED
        assert "access-control-allow-credentials" not in config.headers
        _no_cors(client.get("/config", headers={"Origin": "http://localhost:3000"}))
