"""A throwaway PostgreSQL cluster for tests: ``initdb`` into a temporary folder, ``pg_ctl start`` on
a free port of 127.0.0.1, one database, stopped and deleted afterwards.

PostgreSQL refuses to run as root, so when the tests run as root the server binaries run as the
``postgres`` OS user (``runuser -u postgres --``) over a data folder that user owns. Where the
binaries are missing the tests that need them skip locally and fail under ``CI=true``: the test
set-up (``make system-test-deps``, scripts/install-system-test-deps.sh) installs postgresql.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

MISSING_MESSAGE = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found; the test set-up installs postgresql; "
    "see scripts/install-system-test-deps.sh"
)


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries (or the OS user to run them as root) are missing."""


@dataclass(frozen=True)
class PostgresCluster:
    """A running throwaway cluster and the URL of its test database."""

    url: str
    port: int
    root: Path
    bin_dir: Path


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: the newest Debian install, else ``PATH``."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in debian:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _runner() -> tuple[list[str], str | None]:
    """The command prefix that runs a server binary, and the OS user that owns the data."""
    if os.getuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError as error:
        raise PostgresUnavailable(
            "running as root and there is no 'postgres' OS user to run the server as"
        ) from error
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root and runuser is not available")
    return [runuser, "-u", "postgres", "--"], "postgres"


def _run(command: list[str], timeout: float = 120) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


@contextmanager
def throwaway_postgres(database: str = "medgraph_test") -> Iterator[PostgresCluster]:
    """Start a fresh cluster, create ``database``, yield it, stop and delete it at exit.

    Raises :class:`PostgresUnavailable` when the binaries are missing.
    """
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise PostgresUnavailable(MISSING_MESSAGE)
    prefix, owner = _runner()
    # Not under pytest's tmp folder: that is private to the current user, and the server may run
    # as another one.
    root = Path(tempfile.mkdtemp(prefix="medgraph-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    if owner is not None:
        shutil.chown(root, user=owner, group=owner)
        shutil.chown(sockets, user=owner, group=owner)
    started = False
    try:
        _run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]
        )
        port = _free_port()
        options = (
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
        )
        _run(
            [
                *prefix,
                str(bin_dir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
            ]
        )
        started = True
        import psycopg

        admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{database}"')
        yield PostgresCluster(
            url=f"postgresql://postgres@127.0.0.1:{port}/{database}",
            port=port,
            root=root,
            bin_dir=bin_dir,
        )
    finally:
        if started:
            subprocess.run(
                [*prefix, str(bin_dir / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(data)],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


def skip_or_fail(reason: str) -> None:
    """Skip a test that needs Postgres here; fail it under ``CI=true`` where it must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the Postgres tests must run)", pytrace=False)
    pytest.skip(reason)


def create_database(url: str, name: str) -> str:
    """Create database ``name`` in the cluster of ``url`` (e.g. one per test module); its URL."""
    import psycopg

    base, _, _ = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"
