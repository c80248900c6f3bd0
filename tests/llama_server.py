"""llama-cpp-python's OpenAI-compatible server on 127.0.0.1, for the ``llama_server`` test tier.

The server runs the real Gemma 3 270M GGUF file (tests/real_gemma.py) in a subprocess on a free
port; start-up waits for ``GET /v1/models`` to answer within a bounded time, the server's output
goes to a log file the tests can read, and the process is ended when the block exits.
llama-cpp-python is not a medgraph dependency: ``make test-llama-server-deps`` installs the pinned
version (see the Makefile), built portable with ``-DGGML_NATIVE=OFF``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import pytest

INSTALL_HINT = "install it with `make test-llama-server-deps` (llama-cpp-python[server], pinned)"


def require_llama_cpp() -> None:
    """Skip without llama-cpp-python's server (fail under ``CI=true``, where it must be there)."""
    missing = [
        name
        for name in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")
        if importlib.util.find_spec(name) is None
    ]
    if not missing:
        return
    message = f"the llama.cpp server tier needs {', '.join(missing)}; {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """In the child (Linux): be killed when the test process dies, even without a teardown."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LlamaServer:
    """``python -m llama_cpp.server`` serving one GGUF file with Gemma's chat format."""

    def __init__(
        self,
        model: Path,
        log_path: Path,
        *,
        n_ctx: int = 2048,
        threads: int = 1,
        startup_timeout: float = 120.0,
    ) -> None:
        """Describe the server; nothing starts before :meth:`start` (or ``with``). One thread by
        default: on a busy 2-core machine two spinning llama.cpp threads fell below 1 token/s."""
        self.model = model
        self.log_path = log_path
        self.n_ctx = n_ctx
        self.threads = threads
        self.startup_timeout = startup_timeout
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        """Everything the server has written so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def http_statuses(self) -> list[int]:
        """The statuses of the chat-completion requests answered so far, in order."""
        statuses = []
        for line in self.log().splitlines():
            if '"POST /v1/chat/completions HTTP/1.1"' in line:
                statuses.append(int(line.rsplit('"', 1)[1].split()[0]))
        return statuses

    def start(self) -> LlamaServer:
        """Start the process and wait until it answers, or fail with the end of its log."""
        command = [
            sys.executable,
            *("-m", "llama_cpp.server", "--model", str(self.model)),
            *("--chat_format", "gemma", "--host", "127.0.0.1", "--port", str(self.port)),
            *("--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads)),
            *("--n_threads_batch", str(self.threads)),
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._fail(f"exited with status {self._process.returncode} while starting")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        self._fail(f"did not answer {self.base_url}/models within {self.startup_timeout:g} s")
        raise AssertionError("unreachable")  # pragma: no cover

    def _fail(self, what: str) -> None:
        tail = "\n".join(self.log().splitlines()[-30:])
        self.stop()
        pytest.fail(
            f"llama-cpp-python's server for {self.model} {what}; its log ({self.log_path}) "
            f"ends:\n{tail}\nIf llama_cpp dies with 'Illegal instruction', rebuild it portable: "
            f"{INSTALL_HINT}",
            pytrace=False,
        )

    def stop(self) -> None:
        """End the process (politely first) and wait for it."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
