"""Helpers shared by test modules (not fixtures)."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """MEDGRAPH_DATA if set, else ``../shared/data`` beside the repository; fails if absent."""
    configured = os.environ.get("MEDGRAPH_DATA")
    folder = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    if not (folder / "pubmedqa" / "corpus.jsonl").is_file():
        raise RuntimeError(
            f"shared test data not found at {folder}; set MEDGRAPH_DATA to the folder that holds "
            "pubmedqa/corpus.jsonl"
        )
    return folder


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
def chroma_server(folder: Path) -> Iterator[str]:
    """``chroma run`` on a free port with its data in ``folder``; yields the server URL."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "server.log"
    with log_path.open("w") as log:
        command = [_chroma_cli(), "run", "--path", str(folder / "db"), "--port", str(port)]
        server = subprocess.Popen(
            [*command, "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as reply:
                        if reply.status == 200:
                            break
                except OSError:
                    pass
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the Chroma server did not answer in 60 s"
                time.sleep(0.2)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


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
