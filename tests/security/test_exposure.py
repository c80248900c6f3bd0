"""Fail closed on exposure: no API keys on a non-loopback host is a startup error.

Before: ``medgraph serve --host 0.0.0.0`` without ``MEDGRAPH_API_KEYS`` served chat, search and
the page to anyone on the network, with only a line saying "auth off".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medgraph.errors import ConfigurationError
from medgraph.server.config import ServerSettings
from tests.security.cli_support import run_cli

KEY = "exposure-key-0123456"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "medgraph.example.org"])
def test_no_keys_on_a_reachable_host_is_refused_unless_opted_in(host: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{host}.*--allow-open"):
        ServerSettings(host=host, api_keys=[]).check_exposure()
    ServerSettings(host=host, api_keys=[], allow_open=True).check_exposure()
    ServerSettings(host=host, api_keys=[KEY]).check_exposure()  # type: ignore[list-item]
    ServerSettings(host=host, ingest_keys=[KEY]).check_exposure()  # type: ignore[list-item]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_no_keys_on_loopback_stays_allowed(host: str) -> None:
    ServerSettings(host=host, api_keys=[]).check_exposure()


def test_cli_refuses_an_open_exposed_server_in_one_line(tmp_path: Path) -> None:
    result = run_cli(
        ["serve", "--host", "0.0.0.0", "--port", "9", "--model", "none"], home=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "--allow-open" in result.stderr
    assert "Traceback" not in result.stderr
