"""Case 1 and the page half of case 5 of issue 11: the web page's file read and its uploads.

Before: a FileData naming any server file was copied into Gradio's cache and served back by
``/gradio_api/file=``, with no key; ``/gradio_api/upload`` took 20 MB files without a key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from medgraph.assistant import Assistant
from medgraph.server.app import create_app
from medgraph.server.config import ServerSettings
from tests.graphs.support import KeywordIndex, corpus_documents
from tests.security.web_attack import files_holding, send_file_path
from tests.server.api_support import running
from tests.server.web_support import extractive_settings, sample_image

KEY = "page-key-0123456789"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Gradio's upload folder for this test (read by each Blocks when it is built)."""
    folder = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def _page(tmp_path: Path, keys: list[str], **server: int) -> Iterator[str]:
    settings = extractive_settings(tmp_path / "home")
    settings.server = ServerSettings(api_keys=keys, **server)  # type: ignore[arg-type]
    with (
        Assistant(settings, index=KeywordIndex(corpus_documents(5))) as assistant,
        running(create_app(settings, assistant=assistant)) as base,
    ):
        yield base


@pytest.fixture
def open_page(tmp_path: Path, cache: Path) -> Iterator[str]:
    """The page of a server without API keys (local use)."""
    yield from _page(tmp_path, [])


@pytest.fixture
def keyed_page(tmp_path: Path, cache: Path) -> Iterator[str]:
    """The page of a server with an API key and a 64 KiB upload limit."""
    yield from _page(tmp_path, [KEY], max_upload_bytes=64 * 1024)


def _secret_file(root: Path) -> tuple[Path, bytes]:
    marker = f"PHI-{uuid.uuid4().hex}".encode()
    secret = root / "elsewhere" / "patient-scan.png"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(sample_image().read_bytes() + marker)
    return secret, marker


def test_a_file_path_sent_by_the_client_is_refused_and_not_copied(
    open_page: str, cache: Path, tmp_path: Path
) -> None:
    secret, marker = _secret_file(tmp_path)
    with httpx.Client(base_url=open_page, timeout=60) as client:
        events = send_file_path(client, secret)
        completed = [e for e in events if e.get("msg") == "process_completed"]
        assert completed and completed[-1]["success"] is False, events
        shown = str(events)
        assert "gradio_api/file=" not in shown and str(cache) not in shown
        assert files_holding(cache, marker) == []
        served = client.get(f"/gradio_api/file={secret}")
        assert served.status_code in (403, 404) and marker not in served.content


def test_a_key_protected_page_needs_a_login_for_config_upload_queue_and_files(
    keyed_page: str, tmp_path: Path, cache: Path
) -> None:
    secret, marker = _secret_file(tmp_path)
    with httpx.Client(base_url=keyed_page, timeout=60) as client:
        assert client.get("/config").status_code == 401
        upload = client.post(
            "/gradio_api/upload", files={"files": ("x.png", sample_image().read_bytes())}
        )
        assert upload.status_code == 401
        joined = client.post(
            "/gradio_api/queue/join",
            json={"data": [], "fn_index": 0, "session_hash": "abc", "trigger_id": 1},
        )
        assert joined.status_code == 401
        assert client.get(f"/gradio_api/file={secret}").status_code == 401
        assert files_holding(cache, marker) == []
        # The page still loads: it shows Gradio's login form.
        page = client.get("/")
        assert page.status_code == 200 and "auth_required" in page.text


def test_login_with_an_api_key_opens_the_page_and_uploads_are_size_limited(
    keyed_page: str,
) -> None:
    with httpx.Client(base_url=keyed_page, timeout=60) as client:
        refused = client.post("/login", data={"username": "me", "password": "not-a-key"})
        assert refused.status_code == 400
        assert client.get("/config").status_code == 401
        accepted = client.post("/login", data={"username": "me", "password": KEY})
        assert accepted.status_code == 200
        assert client.get("/config").status_code == 200
        small = client.post("/gradio_api/upload", files={"files": ("a.png", b"\x89PNG" * 10)})
        assert small.status_code == 200
        large = client.post("/gradio_api/upload", files={"files": ("b.png", b"\0" * (65 * 1024))})
        assert large.status_code == 413


def test_the_page_refuses_a_forged_path_even_after_login(
    keyed_page: str, cache: Path, tmp_path: Path
) -> None:
    secret, marker = _secret_file(tmp_path)
    with httpx.Client(base_url=keyed_page, timeout=60) as client:
        assert client.post("/login", data={"username": "me", "password": KEY}).status_code == 200
        events = send_file_path(client, secret)
        completed = [e for e in events if e.get("msg") == "process_completed"]
        assert completed and completed[-1]["success"] is False, events
        assert files_holding(cache, marker) == []
