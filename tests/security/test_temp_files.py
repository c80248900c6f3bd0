"""Finding 5 of issue 26: request files live in one folder per server process, never outlive
their request, and the folders of processes that died are removed at the next start.

Before: after two kill -9 of the server, 15 ``medgraph-request*`` folders stayed in the temp
directory, and a later clean start and stop did not remove them; they hold uploaded images when
requests carry them.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from medgraph.assistant import Assistant
from medgraph.server.app import create_app
from medgraph.server.scratch import PARENT_PREFIX, ScratchSpace
from tests.graphs.support import KeywordIndex, corpus_documents
from tests.server.api_support import (
    HeldIndex,
    build_index,
    build_settings,
    data_url,
    indexed_records,
    running,
    user_message,
)
from tests.server.test_api import QUESTION
from tests.server.web_support import sample_image
from tests.support import dead_pid


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp folder, as the server sees it, for this test only."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _parents(root: Path, pid: int) -> list[Path]:
    return sorted(root.glob(f"{PARENT_PREFIX}{pid}-*"))


def _holding(root: Path, marker: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and marker in p.read_bytes()]


def _image_with(marker: bytes, folder: Path) -> str:
    """A real radiograph PNG with ``marker`` after its end, as a data URL."""
    path = folder / "marked.png"
    path.write_bytes(sample_image().read_bytes() + marker)
    return data_url(path, "image/png")


def test_leftovers_of_dead_processes_go_at_start_and_ours_at_shutdown(
    temp_root: Path, tmp_path: Path
) -> None:
    dead = dead_pid()
    leftover = temp_root / f"{PARENT_PREFIX}{dead}-a1b2c3" / "medgraph-request-x"
    leftover.mkdir(parents=True)
    (leftover / "image-1.png").write_bytes(b"a patient's scan")
    living = temp_root / f"{PARENT_PREFIX}{os.getppid()}-d4e5f6"  # a process that still runs
    living.mkdir()
    kept = tmp_path / "not-a-server-folder"
    kept.mkdir()
    (kept / "notes.txt").write_text("keep me")
    link = temp_root / f"{PARENT_PREFIX}{dead}-link"
    link.symlink_to(kept, target_is_directory=True)
    # An earlier process that had this process's pid (a restarted container's server)...
    same_pid = temp_root / f"{PARENT_PREFIX}{os.getpid()}-earlier"
    same_pid.mkdir()
    # ...and another server app of this process, still running.
    sibling = ScratchSpace()
    sibling_folder = sibling.new_folder("medgraph-request-")

    settings = build_settings(tmp_path / "server")
    marker = uuid.uuid4().hex.encode()
    with (
        Assistant(settings, index=KeywordIndex(corpus_documents(5))) as assistant,
        running(create_app(settings, assistant=assistant, web=False)) as url,
    ):
        assert not leftover.parent.exists() and not same_pid.exists()
        assert living.is_dir() and link.is_symlink() and (kept / "notes.txt").exists()
        assert sibling_folder.is_dir()
        response = httpx.post(
            f"{url}/v1/chat/completions",
            json={"messages": [user_message(QUESTION, _image_with(marker, tmp_path))]},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        (ours,) = set(_parents(temp_root, os.getpid())) - {sibling.parent}
        assert list(ours.iterdir()) == [] and _holding(temp_root, marker) == []
    assert _parents(temp_root, os.getpid()) == [sibling.parent]  # ours removed at shutdown
    sibling.close()
    assert _parents(temp_root, os.getpid()) == []
    assert living.is_dir() and (kept / "notes.txt").read_text() == "keep me"


def test_an_uploaded_image_lives_in_the_process_folder_only_while_its_request_runs(
    temp_root: Path, tmp_path: Path
) -> None:
    settings = build_settings(tmp_path / "server")
    held = HeldIndex(build_index(settings, indexed_records(10)))
    marker = uuid.uuid4().hex.encode()
    message = user_message(QUESTION, _image_with(marker, tmp_path))
    body = {"model": "medgraph", "messages": [message]}
    with Assistant(settings, index=held) as assistant:
        app = create_app(settings, assistant=assistant, web=False)
        with running(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            for stream in (False, True):
                held.entered.clear()
                held.release.clear()
                with ThreadPoolExecutor(1) as pool:
                    answer = pool.submit(
                        client.post, "/v1/chat/completions", json={**body, "stream": stream}
                    )
                    assert held.entered.wait(timeout=30)
                    (saved,) = _holding(temp_root, marker)
                    (ours,) = _parents(temp_root, os.getpid())
                    assert saved.parent.parent == ours
                    assert saved.parent.name.startswith("medgraph-request-")
                    held.release.set()
                    assert answer.result(timeout=60).status_code == 200
                assert _holding(temp_root, marker) == [] and list(ours.iterdir()) == []

            # A streaming client that leaves while the answer is still being made.
            held.entered.clear()
            held.release.clear()
            first_line = threading.Event()

            def read_one_line() -> None:
                with client.stream(
                    "POST", "/v1/chat/completions", json={**body, "stream": True}
                ) as response:
                    assert response.status_code == 200
                    next(response.iter_lines())
                    first_line.set()

            with ThreadPoolExecutor(1) as pool:
                left = pool.submit(read_one_line)
                assert held.entered.wait(timeout=30) and first_line.wait(timeout=30)
                left.result(timeout=30)  # the client has closed the connection
                deadline = time.monotonic() + 10
                while _holding(temp_root, marker) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert _holding(temp_root, marker) == []  # gone before the answer is done
                held.release.set()
    held.index.close()
    assert _parents(temp_root, os.getpid()) == []
