"""Helpers shared by test modules (not fixtures)."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real datasets the tests read, in the layout of the shared data folder's README.

    ``MEDGRAPH_DATA`` if set, else ``../shared/data`` beside the repository, else a folder built
    for this machine: PubMedQA from the user's data cache (fetched there by ``make data``, checked
    by sha256, see :mod:`medgraph.datasets`) beside stand-in images drawn by
    :mod:`tests.synthetic_images`.
    """
    configured = os.environ.get("MEDGRAPH_DATA")
    if configured:
        folder = Path(configured)
        if not (folder / "pubmedqa" / "corpus.jsonl").is_file():
            raise RuntimeError(
                f"MEDGRAPH_DATA={folder} holds no pubmedqa/corpus.jsonl; point it at a folder laid "
                "out like the shared data README, or unset it to fetch PubMedQA into the cache"
            )
        return folder
    beside = REPO_ROOT.parent / "shared" / "data"
    if (beside / "pubmedqa" / "corpus.jsonl").is_file():
        return beside
    return _fetched_test_data()


_FETCHED: list[Path] = []


def _fetched_test_data() -> Path:
    """PubMedQA from the data cache (fetched if needed) and synthetic images, in a temp folder."""
    if _FETCHED:
        return _FETCHED[0]
    from medgraph.datasets import cached_pubmedqa, data_cache_dir
    from tests.synthetic_images import write_test_images

    # Tests never reach the network: `make data` (python -m medgraph.datasets) fetches beforehand.
    pubmedqa = cached_pubmedqa()
    if pubmedqa is None:
        raise RuntimeError(
            f"no test data: MEDGRAPH_DATA is unset, {REPO_ROOT.parent / 'shared' / 'data'} is "
            f"absent and the data cache {data_cache_dir()} holds no verified PubMedQA. Run "
            "`make data` (fetches it from github.com/pubmedqa/pubmedqa, checked by sha256) or set "
            "MEDGRAPH_DATA"
        )
    folder = Path(tempfile.mkdtemp(prefix="medgraph-test-data-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "pubmedqa").symlink_to(pubmedqa, target_is_directory=True)
    write_test_images(folder / "images")
    _FETCHED.append(folder)
    return folder


NOT_FETCHABLE = {
    "medqa/sample.jsonl": "MedQA-US as redistributed by the MIRAGE benchmark "
    "(github.com/Teddy-XiongGZ/MIRAGE, MIT); medgraph pins no download of it yet",
    "bioasq": "BioASQ golden files via MIRAGE; licensed for evaluation inside this project only, "
    "so never downloaded by medgraph",
}


def require_shared_file(relative: str) -> Path:
    """``shared_data_dir() / relative``; skips, naming the file and its source, when it is absent.

    Only for files with no public download medgraph may fetch (:data:`NOT_FETCHABLE`): with the
    shared data folder present these tests always run.
    """
    import pytest

    path = shared_data_dir() / relative
    if not path.is_file():
        source = next(text for key, text in NOT_FETCHABLE.items() if relative.startswith(key))
        pytest.skip(f"needs {relative} ({source}); set MEDGRAPH_DATA to a folder holding it")
    return path


@dataclass(frozen=True)
class IngestedCorpus:
    """The shared PubMedQA corpus ingested once per test session."""

    index_dir: Path
    seconds: float
    summary: str


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _chroma_cli() -> str:
    beside_python = Path(sys.executable).parent / "chroma"
    found = str(beside_python) if beside_python.exists() else shutil.which("chroma")
    assert found, "the chromadb package installs a `chroma` command; it is missing"
    return found


@contextmanager
def _server_process(
    command: list[str], folder: Path, name: str, ready: Callable[[], bool]
) -> Iterator[None]:
    """Run ``command`` (logging to ``folder/server.log``) until the block ends, once ``ready()``
    says it answers (60 s at most); the server is stopped afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if ready():
                        break
                except OSError:
                    pass
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, f"the {name} did not answer in 60 s"
                time.sleep(0.2)
            yield
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


@contextmanager
def chroma_server(folder: Path) -> Iterator[str]:
    """``chroma run`` on a free port with its data in ``folder``; yields the server URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [_chroma_cli(), "run", "--path", str(folder / "db"), "--port", str(port)]

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as reply:
            return bool(reply.status == 200)

    with _server_process([*command, "--host", "127.0.0.1"], folder, "Chroma server", ready):
        yield url


@contextmanager
def milvus_lite_server(folder: Path) -> Iterator[str]:
    """``milvus-lite server`` (Milvus Lite's gRPC server, as a cluster is reached) on a free port
    with its data in ``folder``; yields the server URI."""
    port = free_port()
    command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(folder / "db")]

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True

    command += ["--host", "127.0.0.1", "--port", str(port)]
    with _server_process(command, folder, "Milvus Lite server", ready):
        yield f"http://127.0.0.1:{port}"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose pixel data is a few bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def merged_chunks(chunks: Sequence[Any]) -> Any:
    """A stream's message chunks added into one message (how LangChain merges them)."""
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    return merged


def dead_pid() -> int:
    """The pid of a process that has just exited (no process has it now)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=60)
    try:
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return process.pid
    raise AssertionError(f"pid {process.pid} was taken again at once; rerun the test")
