"""Public datasets fetched once into a user cache and checked by sha256 before they are kept.

The cache is ``MEDGRAPH_DATA_CACHE`` if set, else ``$XDG_CACHE_HOME/medgraph/data`` (default
``~/.cache/medgraph/data``); its layout matches a ``MEDGRAPH_DATA`` folder
(``pubmedqa/corpus.jsonl``, ``pubmedqa/dev.jsonl``). ``MEDGRAPH_DATA_MIRROR`` (a base URL)
replaces the public hosts, for mirrors and for tests that serve the files from 127.0.0.1.

Every file is checked against a pinned sha256 before it is renamed into place, so the cache holds
either a verified file or nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from medgraph.cache import user_cache_dir
from medgraph.errors import ConfigurationError

MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
"""No source file medgraph fetches is near this; a larger answer is refused, not buffered."""


class DataUnavailableError(ConfigurationError):
    """A dataset is neither on this machine nor downloadable right now."""


class DataIntegrityError(ConfigurationError):
    """A downloaded or cached file does not match its pinned sha256."""


@dataclass(frozen=True)
class RemoteFile:
    """A public file: where it lives, its path under a mirror, and what it is."""

    url: str
    mirror_path: str
    source: str

    def resolved_url(self) -> str:
        """The URL to fetch: under ``MEDGRAPH_DATA_MIRROR`` when set, else the public one."""
        mirror = os.environ.get("MEDGRAPH_DATA_MIRROR")
        return f"{mirror.rstrip('/')}/{self.mirror_path}" if mirror else self.url


@dataclass(frozen=True)
class DerivedFile:
    """A file medgraph builds from public sources, with the sha256 its content must have."""

    relative_path: str
    sha256: str


PUBMEDQA_SOURCE = "https://github.com/pubmedqa/pubmedqa (data/ori_pqal.json, MIT licence)"
PUBMEDQA_PQAL = RemoteFile(
    url="https://raw.githubusercontent.com/pubmedqa/pubmedqa/master/data/ori_pqal.json",
    mirror_path="pubmedqa/ori_pqal.json",
    source=PUBMEDQA_SOURCE,
)
PUBMEDQA_TEST_SPLIT = RemoteFile(
    url="https://raw.githubusercontent.com/pubmedqa/pubmedqa/master/data/test_ground_truth.json",
    mirror_path="pubmedqa/test_ground_truth.json",
    source="https://github.com/pubmedqa/pubmedqa (data/test_ground_truth.json, MIT licence)",
)
# Hashes of the files as built by ``pqal_corpus``/``pqal_dev`` from the two files above (the same
# bytes as the project's reference copy described in the shared data README).
PUBMEDQA_CORPUS = DerivedFile(
    "pubmedqa/corpus.jsonl", "4780fbd9cfb53c822848ca1b35e2e100f5d1c49e57ca85bdd2b03387900e5935"
)
PUBMEDQA_DEV = DerivedFile(
    "pubmedqa/dev.jsonl", "48aaed176c8e67bd62930853a0ac837c9bb9c6572c8553a4c2a3b06518106bf3"
)


def data_cache_dir() -> Path:
    """Where fetched datasets are kept: ``MEDGRAPH_DATA_CACHE``, else the user's cache folder."""
    return user_cache_dir("data", "MEDGRAPH_DATA_CACHE")


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(remote: RemoteFile, *, timeout: float = 20.0) -> bytes:
    """The bytes of ``remote`` (at most :data:`MAX_DOWNLOAD_BYTES`); raises DataUnavailableError."""
    url = remote.resolved_url()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read(MAX_DOWNLOAD_BYTES + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise DataUnavailableError(
            f"could not download {url} ({error}); it comes from {remote.source}"
        ) from error
    if len(body) > MAX_DOWNLOAD_BYTES:
        raise DataUnavailableError(f"{url} is larger than {MAX_DOWNLOAD_BYTES:,} bytes; refused")
    return body


def verify(derived: DerivedFile, content: bytes, *, source: str, folder: Path) -> None:
    """Raise DataIntegrityError unless ``content`` has the sha256 pinned for ``derived``."""
    actual = hashlib.sha256(content).hexdigest()
    if actual != derived.sha256:
        raise DataIntegrityError(
            f"{derived.relative_path} built from {source} has sha256 {actual}, expected "
            f"{derived.sha256}; the download is corrupt or the source changed. Nothing was kept "
            f"in {folder}; set MEDGRAPH_DATA to a folder that holds a verified copy"
        )


def write_verified(folder: Path, derived: DerivedFile, content: bytes, *, source: str) -> Path:
    """Write ``content`` to ``folder/derived.relative_path`` only if its sha256 is the pinned one.

    The bytes go to a temporary file beside the target and are renamed into place after the check,
    so a failure leaves no partial file behind.
    """
    verify(derived, content, source=source, folder=folder)
    target = folder / derived.relative_path
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return target


def pqal_corpus(raw: dict[str, dict[str, object]]) -> list[dict[str, object]]:
    """PubMedQA's ``ori_pqal.json`` as medgraph's corpus records (pmid, year, mesh, sections)."""
    records = []
    for pmid, item in raw.items():
        contexts = list(item.get("CONTEXTS", []))  # type: ignore[call-overload]
        labels = list(item.get("LABELS", []))  # type: ignore[call-overload]
        sections = [
            {"label": str(label), "text": str(text)}
            for label, text in zip(labels or [""] * len(contexts), contexts, strict=False)
        ]
        if item.get("LONG_ANSWER"):
            sections.append({"label": "CONCLUSIONS", "text": str(item["LONG_ANSWER"])})
        year = item.get("YEAR")
        records.append(
            {
                "pmid": str(pmid),
                "year": int(year) if isinstance(year, str | int) and str(year).isdigit() else None,
                "mesh": list(item.get("MESHES", [])),  # type: ignore[call-overload]
                "sections": sections,
            }
        )
    return records


def pqal_dev(raw: dict[str, dict[str, object]], test_pmids: set[str]) -> list[dict[str, object]]:
    """The official non-test half of PQA-L as dev questions (pmid, question, decision, answer)."""
    return [
        {
            "pmid": str(pmid),
            "question": item.get("QUESTION"),
            "final_decision": item.get("final_decision"),
            "long_answer": item.get("LONG_ANSWER"),
        }
        for pmid, item in raw.items()
        if str(pmid) not in test_pmids
    ]


def jsonl_bytes(records: list[dict[str, object]]) -> bytes:
    """Records as JSON lines, UTF-8 kept as is (the byte form the pinned hashes cover)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def _is_verified(folder: Path, derived: DerivedFile) -> bool:
    path = folder / derived.relative_path
    return path.is_file() and sha256_of(path) == derived.sha256


def _json_object(remote: RemoteFile, body: bytes) -> dict[str, dict[str, object]]:
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise DataIntegrityError(
            f"{remote.resolved_url()} is not valid JSON ({error}); it comes from {remote.source}"
        ) from error
    if not isinstance(parsed, dict):
        raise DataIntegrityError(f"{remote.resolved_url()} is not a JSON object")
    return parsed


def cached_pubmedqa(folder: Path | None = None) -> Path | None:
    """``folder/pubmedqa`` (default: the data cache) if both its files pass the sha256 check."""
    folder = folder or data_cache_dir()
    if all(_is_verified(folder, derived) for derived in (PUBMEDQA_CORPUS, PUBMEDQA_DEV)):
        return folder / "pubmedqa"
    return None


def ensure_pubmedqa(folder: Path | None = None, *, timeout: float = 20.0) -> Path:
    """``folder/pubmedqa`` holding verified ``corpus.jsonl`` and ``dev.jsonl``, fetched if needed.

    ``folder`` defaults to :func:`data_cache_dir`. Files already there are re-checked; a file with
    the wrong hash is rebuilt from the public source.
    """
    folder = folder or data_cache_dir()
    cached = cached_pubmedqa(folder)
    if cached is not None:
        return cached
    try:
        pqal = fetch(PUBMEDQA_PQAL, timeout=timeout)
        test_split = fetch(PUBMEDQA_TEST_SPLIT, timeout=timeout)
    except DataUnavailableError as error:
        raise DataUnavailableError(
            f"PubMedQA (pubmedqa/corpus.jsonl and dev.jsonl) is not in {folder} and {error}. "
            "Set MEDGRAPH_DATA to a folder that holds pubmedqa/, or MEDGRAPH_DATA_MIRROR to a "
            "mirror of the public files"
        ) from error
    raw = _json_object(PUBMEDQA_PQAL, pqal)
    test_pmids = set(_json_object(PUBMEDQA_TEST_SPLIT, test_split))
    # Both are checked before either is written: a bad source leaves the cache as it was.
    corpus = jsonl_bytes(pqal_corpus(raw))
    dev = jsonl_bytes(pqal_dev(raw, test_pmids))
    verify(PUBMEDQA_CORPUS, corpus, source=PUBMEDQA_SOURCE, folder=folder)
    verify(PUBMEDQA_DEV, dev, source=PUBMEDQA_SOURCE, folder=folder)
    write_verified(folder, PUBMEDQA_CORPUS, corpus, source=PUBMEDQA_SOURCE)
    write_verified(folder, PUBMEDQA_DEV, dev, source=PUBMEDQA_SOURCE)
    return folder / "pubmedqa"


def main() -> None:
    """``python -m medgraph.datasets``: fetch what the demo and the tests read into the cache."""
    try:
        folder = ensure_pubmedqa()
    except ConfigurationError as error:
        print(f"medgraph: error: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    print(f"PubMedQA verified in {folder}")


if __name__ == "__main__":
    main()
