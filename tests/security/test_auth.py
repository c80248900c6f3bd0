"""Case 4 of issue 11: auth fails closed, the API schema is not public, thread ids are keyed.

Before: ``MEDGRAPH_API_KEYS=',,,'`` started the server with "auth off"; ``/docs`` and
``/openapi.json`` answered without a key and loaded Swagger UI from a CDN; thread ids embedded an
unsalted ``sha256(key)[:16]``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from medgraph.assistant import Assistant
from medgraph.server.app import create_app
from medgraph.server.config import ServerSettings
from medgraph.server.service import ChatService, load_thread_secret
from medgraph.settings import Settings
from tests.graphs.support import KeywordIndex, corpus_documents
from tests.server.web_support import extractive_settings

KEY = "auth-test-key-0123"


@pytest.mark.parametrize(
    "keys", [",,,", "", " , ", "short", "has space-0123456", "k\u00e9y-0123456789"]
)
def test_a_set_but_empty_or_malformed_key_list_is_a_startup_error(
    keys: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDGRAPH_API_KEYS", keys)
    with pytest.raises(ValidationError, match="API key"):
        Settings()
    monkeypatch.delenv("MEDGRAPH_API_KEYS")
    monkeypatch.setenv("MEDGRAPH_SERVER__API_KEYS", keys)
    with pytest.raises(ValidationError, match="API key"):
        Settings()


def test_unset_keys_mean_no_auth_and_valid_keys_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDGRAPH_API_KEYS", raising=False)
    assert Settings().server.api_keys == []
    monkeypatch.setenv("MEDGRAPH_API_KEYS", f" {KEY} ,other-key-456789,")
    assert Settings().server.key_values() == [KEY, "other-key-456789"]


def test_cli_reports_an_empty_key_list_in_one_line(tmp_path: Path) -> None:
    from tests.security.cli_support import run_cli

    result = run_cli(["serve", "--port", "9"], env={"MEDGRAPH_API_KEYS": ",,,"}, home=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "MEDGRAPH" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = extractive_settings(tmp_path / "home")
    settings.server = ServerSettings(api_keys=[KEY])  # type: ignore[list-item]
    assistant = Assistant(settings, index=KeywordIndex(corpus_documents(5)))
    with TestClient(create_app(settings, assistant=assistant, web=False)) as test_client:
        yield test_client
    assistant.close()


def test_docs_and_schema_are_not_served_by_default(client: TestClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json", "/v1/openapi.json", "/docs/oauth2-redirect"):
        response = client.get(path, headers={"Authorization": f"Bearer {KEY}"})
        assert response.status_code in (401, 404), path
        assert "swagger" not in response.text.lower()


def test_the_schema_when_enabled_needs_a_key_and_no_page_loads_a_cdn(tmp_path: Path) -> None:
    settings = extractive_settings(tmp_path / "home")
    settings.server = ServerSettings(api_keys=[KEY], openapi=True)  # type: ignore[list-item]
    with (
        Assistant(settings, index=KeywordIndex(corpus_documents(5))) as assistant,
        TestClient(create_app(settings, assistant=assistant)) as client,
    ):
        assert client.get("/v1/openapi.json").status_code == 401
        schema = client.get("/v1/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
        assert schema.status_code == 200 and "/v1/chat/completions" in schema.json()["paths"]
        assert client.get("/docs").status_code != 200 or "swagger" not in client.get("/docs").text
        page = client.get("/").text
        external = set(re.findall(r"""(?:src|href)=["'](https?://[^"']+)""", page))
        assert external == set(), external


def test_thread_ids_use_a_keyed_hash_with_the_server_secret(tmp_path: Path) -> None:
    settings = extractive_settings(tmp_path / "home")
    with Assistant(settings, index=KeywordIndex(corpus_documents(5))) as assistant:
        service = ChatService(assistant, settings)
        thread = service.api_thread_id("conv-1", KEY)
        service.close()
    unsalted = hashlib.sha256(KEY.encode()).hexdigest()
    assert unsalted[:16] not in thread
    secret_file = tmp_path / "home" / "server-secret"
    assert secret_file.stat().st_mode & 0o077 == 0
    # The same home gives the same secret (threads survive a restart); another home does not.
    assert load_thread_secret(settings) == secret_file.read_bytes()
    other = extractive_settings(tmp_path / "other")
    assert load_thread_secret(other) != secret_file.read_bytes()
    configured = extractive_settings(tmp_path / "third")
    configured.server = ServerSettings(thread_secret="configured-secret")  # type: ignore[arg-type]
    assert load_thread_secret(configured) == b"configured-secret"
