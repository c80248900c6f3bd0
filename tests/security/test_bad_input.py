"""Cases 5 and 6 of issue 11 (and the terminal leak of case 7): bad or oversized input gets a
clean answer.

Before: a lone surrogate in chat content gave a plain-text 500 (a cut stream when streaming); a
2 MB question was accepted and grew the checkpoint database by 72 MB; ``medgraph ask`` with bytes
that are not UTF-8, ``MEDGRAPH_MODELS='{not json'`` and an unwritable ``MEDGRAPH_HOME`` ended in
tracebacks with exit 1; ``medgraph ingest <missing file>`` exited 1 saying "the rest were
indexed"; escape sequences in ingested text reached the terminal through ``search`` and ``ask``.
Issue 26: ``stream: "yes"`` and ``stream: 1`` were taken as true; ``temperature: "hot"``,
``n: 1000`` and ``max_tokens: -5`` were silently ignored (200).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from medgraph.assistant import Assistant
from medgraph.cli.terminal import terminal_text
from medgraph.server.app import create_app
from tests.security.cli_support import run_cli
from tests.server.api_support import build_index, build_settings, indexed_records, running
from tests.server.test_api import QUESTION

KEY = "bad-input-key-0123"
MAX_QUESTION = 2000


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A served API (extractive, small real index); its URL and checkpoint file."""
    root = tmp_path_factory.mktemp("bad-input")
    settings = build_settings(root, api_keys=[KEY], max_message_bytes=64 * 1024)
    settings.graph = settings.graph.model_copy(update={"max_question_chars": MAX_QUESTION})
    index = build_index(settings, indexed_records(10))
    with Assistant(settings, index=index) as assistant:
        app = create_app(settings, assistant=assistant, web=False)
        with running(app) as url:
            yield url, settings.checkpoint_path
    index.close()


def _post(url: str, raw: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        content=raw.encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        timeout=60,
    )


def _openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["message"] and error["type"] and "code" in error
    return error


@pytest.mark.parametrize("stream", [False, True])
def test_a_lone_surrogate_is_an_openai_400(api: tuple[str, Path], stream: bool) -> None:
    url, _ = api
    # The JSON escape \ud800 decodes to a lone surrogate (json.dumps keeps it escaped).
    raw = json.dumps(
        {
            "model": "medgraph",
            "stream": stream,
            "messages": [{"role": "user", "content": "a\ud800b"}],
        }
    )
    error = _openai_error(_post(url, raw), 400)
    assert error["code"] == "invalid_text" and "surrogate" in error["message"]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("stream", "yes", "valid boolean"),
        ("stream", 1, "valid boolean"),
        ("temperature", "hot", "valid number"),
        ("temperature", True, "valid number"),
        ("top_p", "0.9", "valid number"),
        ("n", 1000, "one per request"),
        ("n", 0, "one per request"),
        ("max_tokens", -5, "greater than or equal to 1"),
        ("max_tokens", 0, "greater than or equal to 1"),
        ("max_tokens", "64", "valid integer"),
        ("max_completion_tokens", -1, "greater than or equal to 1"),
    ],
)
def test_a_malformed_option_is_an_openai_400_naming_the_field(
    api: tuple[str, Path], field: str, value: Any, words: str
) -> None:
    url, _ = api
    body = {"model": "medgraph", "messages": [{"role": "user", "content": QUESTION}]}
    error = _openai_error(_post(url, json.dumps({**body, field: value})), 400)
    assert error["type"] == "invalid_request_error" and error["param"] == field, error
    assert error["message"].startswith(f"invalid request: {field}: ") and words in error["message"]


def test_well_formed_options_are_accepted(api: tuple[str, Path]) -> None:
    url, _ = api
    options = {"stream": False, "temperature": 0, "top_p": 0.5, "n": 1, "max_tokens": 64}
    body = {"model": "medgraph", "messages": [{"role": "user", "content": QUESTION}], **options}
    response = _post(url, json.dumps(body))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


def test_a_failure_after_the_stream_started_ends_with_an_error_event_and_done(
    tmp_path: Path,
) -> None:
    class FailingIndex:
        def search(self, query: str, k: int = 10, mode: str = "hybrid", where: Any = None) -> Any:
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    settings = build_settings(tmp_path)
    with (
        Assistant(settings, index=FailingIndex()) as assistant,  # type: ignore[arg-type]
        running(create_app(settings, assistant=assistant, web=False)) as url,
    ):
        body = {
            "model": "medgraph",
            "stream": True,
            "messages": [{"role": "user", "content": QUESTION}],
        }
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as response:
            assert response.status_code == 200
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["type"] == "server_error" and "surrogate" not in error["message"]


def test_a_long_question_is_refused_and_the_checkpoints_stay_small(
    api: tuple[str, Path],
) -> None:
    url, checkpoints = api
    before = checkpoints.stat().st_size if checkpoints.exists() else 0
    for size in (MAX_QUESTION + 1, 2 * 1024 * 1024):
        body = {
            "model": "medgraph",
            "messages": [{"role": "user", "content": "x " * (size // 2 + 1)}],
        }
        error = _openai_error(_post(url, json.dumps(body)), 400)
        assert error["code"] in ("question_too_long", "messages_too_large")
    assert (checkpoints.stat().st_size if checkpoints.exists() else 0) == before


def test_total_message_text_is_bounded_even_when_the_question_is_short(
    api: tuple[str, Path],
) -> None:
    url, _ = api
    history = [{"role": "assistant", "content": "y" * 70_000}]
    body = {"model": "medgraph", "messages": [*history, {"role": "user", "content": QUESTION}]}
    assert _openai_error(_post(url, json.dumps(body)), 400)["code"] == "messages_too_large"


def _stored_bytes(checkpoints: Path) -> int:
    """Bytes of checkpoint and pending-write blobs in the SQLite checkpointer."""
    with sqlite3.connect(checkpoints) as connection:
        return sum(
            connection.execute(
                f"select coalesce(sum(length({column})), 0) from {table}"
            ).fetchone()[0]
            for table, column in (
                ("checkpoints", "checkpoint"),
                ("checkpoints", "metadata"),
                ("writes", "value"),
            )
        )


def test_checkpoint_growth_per_turn_is_bounded(api: tuple[str, Path]) -> None:
    """A question at the length limit adds a few times its size to the checkpointer, not ~30x
    (one checkpoint per turn, not one per graph step)."""
    url, checkpoints = api
    question = (QUESTION + " ") * (MAX_QUESTION // (len(QUESTION) + 1))
    body = {
        "model": "medgraph",
        "messages": [{"role": "user", "content": "Do statins prevent stroke?"}],
    }
    assert _post(url, json.dumps(body)).status_code == 200  # the tables exist from here on
    before = _stored_bytes(checkpoints)
    body = {"model": "medgraph", "messages": [{"role": "user", "content": question}]}
    assert _post(url, json.dumps(body)).status_code == 200
    growth = _stored_bytes(checkpoints) - before
    assert growth < 10 * len(question) + 32 * 1024, (growth, len(question))


# -- the CLI ------------------------------------------------------------------------------------


def _one_line_exit_2(result: Any, *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medgraph: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_cli_question_with_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    import os

    # What the shell passes for $'statins \xff\xfe stroke': the bytes become lone surrogates.
    question = os.fsdecode(b"statins \xff\xfe stroke")
    _one_line_exit_2(run_cli(["ask", "--model", "none", question], home=tmp_path), "surrogate")


def test_cli_setting_that_is_not_json(tmp_path: Path) -> None:
    result = run_cli(
        ["ask", "--model", "none", "q"], env={"MEDGRAPH_MODELS": "{not json"}, home=tmp_path
    )
    _one_line_exit_2(result, "MEDGRAPH_MODELS")


def test_cli_unwritable_home(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {"MEDGRAPH_HOME": str(blocker / "home")}
    result = run_cli(["ask", "--model", "none", "statins and stroke"], env=env, home=tmp_path)
    _one_line_exit_2(result, "MEDGRAPH_HOME")


def test_cli_ingest_of_a_missing_file(tmp_path: Path) -> None:
    result = run_cli(["ingest", str(tmp_path / "missing.jsonl")], home=tmp_path)
    _one_line_exit_2(result, "missing.jsonl", "nothing was indexed")
    assert "the rest" not in result.stderr


# -- the terminal -------------------------------------------------------------------------------

HOSTILE = (
    "Statins \x1b]0;owned\x07lower \x1b]8;;https://evil.example\x1b\\risk\x1b]8;;\x1b\\ "
    "\x1b[2J\x1b[31mof stroke\x1b[0m\x07\x9b31m\x1bc in trials\x00."
)


def test_terminal_text_removes_osc_csi_bel_and_c1_but_keeps_the_words() -> None:
    cleaned = terminal_text(HOSTILE + "\nnext\tline")
    assert not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in cleaned)
    assert "Statins lower risk of stroke in trials." in cleaned
    assert "evil.example" not in cleaned and "owned" not in cleaned
    assert cleaned.endswith("\nnext\tline")


def test_search_and_ask_print_no_escape_sequences_from_ingested_text(tmp_path: Path) -> None:
    record = {
        "pmid": "99000001",
        "title": "Statin \x1b]0;title\x07therapy",
        "sections": [{"label": "RESULTS", "text": HOSTILE + " Statins reduce stroke risk."}],
        "year": 2020,
    }
    corpus = tmp_path / "hostile.jsonl"
    corpus.write_text(json.dumps(record) + "\n")
    index = ["--index", str(tmp_path / "index")]
    ingested = run_cli(["ingest", "-q", str(corpus), *index], home=tmp_path, timeout=300)
    assert ingested.returncode == 0, ingested.stderr
    for args in (
        ["search", "statins stroke", *index],
        ["ask", "--model", "none", "Do statins lower stroke risk?", *index],
    ):
        result = run_cli(args, home=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout, result.stdout
        assert "\x9b" not in result.stdout
