"""``medgraph ingest --ray``: a real local Ray cluster (2 CPUs) writing to a real ``chroma run``
or a real Milvus Lite server (``milvus-lite server``).

The Ray ingest must store what a single-process ingest stores (chunk ids, texts, vectors to cosine
0.9999 with the packaged MiniLM), keep BM25 equal to a rebuild, and finish an interrupted ingest
(chunks lost when the driver died) by embedding only what is missing; one embedding actor is
SIGKILLed during the first ingest. A second test SIGKILLs the driver itself (``medgraph ingest
--ray local`` in a subprocess, its local Ray cluster with it) and reruns the command.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medgraph.knowledge.chroma_store import ChromaStore
from medgraph.knowledge.config import KnowledgeSettings
from medgraph.knowledge.index import LiteratureIndex
from medgraph.knowledge.lexical import LexicalIndex
from medgraph.knowledge.milvus_store import MilvusStore
from tests.knowledge.index_support import corpus_records, write_jsonl
from tests.support import chroma_server

ray = pytest.importorskip("ray", reason="the medgraph[ray] extra is not installed")

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_server(tmp_path_factory.mktemp("chroma-ray")) as url:
        yield url


def _contents(index: LiteratureIndex) -> dict[str, tuple[str, np.ndarray]]:
    store = index._open_for_read()
    if isinstance(store, MilvusStore):
        from pymilvus import MilvusClient

        client = MilvusClient(uri=store.uri)
        rows = client.query(
            store.collection_name, filter="", output_fields=["text", "vector"], limit=16384
        )
        return {row["id"]: (row["text"], np.asarray(row["vector"], np.float64)) for row in rows}
    batch = store.collection.get(include=["documents", "embeddings"])
    return {
        chunk_id: (text, np.asarray(vector, dtype=np.float64))
        for chunk_id, text, vector in zip(
            batch["ids"], batch["documents"], batch["embeddings"], strict=True
        )
    }


def _assert_same(ray_index: LiteratureIndex, single: LiteratureIndex) -> None:
    got, want = _contents(ray_index), _contents(single)
    assert sorted(got) == sorted(want)
    for chunk_id, (text, vector) in want.items():
        assert got[chunk_id][0] == text
        other = got[chunk_id][1]
        cosine = float(vector @ other / (np.linalg.norm(vector) * np.linalg.norm(other)))
        assert cosine >= 0.9999, chunk_id
    store = ray_index._open_for_read()
    if isinstance(store, MilvusStore):
        # Milvus keeps its own BM25, whose statistics are per segment on Milvus Lite (so its
        # scores depend on how the writes fell into segments); the dense side must agree
        assert not (ray_index.index_dir / "bm25").exists()
        for query in ("patients treatment", "children risk factors"):
            ranked = [hit.chunk.chunk_id for hit in ray_index.search(query, 5, mode="dense")]
            assert ranked == [hit.chunk.chunk_id for hit in single.search(query, 5, mode="dense")]
            assert ray_index.search(query, 5, mode="lexical")
    else:
        lexical = LexicalIndex.load(ray_index.index_dir / "bm25")
        assert lexical is not None and sorted(lexical.ids) == sorted(want)
        for query in ("patients treatment", "children risk factors"):
            assert [c for c, _ in lexical.search(query, 10)] == [
                c for c, _ in single._open_searcher().lexical_index().search(query, 10)
            ]
    assert store.state()["ingest_state"] == "complete"


class _ActorKiller(threading.Thread):
    """SIGKILLs one embedding actor once the first batch is on the server (one kill only)."""

    def __init__(self, settings: KnowledgeSettings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.killed: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        store = LiteratureIndex(self.settings)._new_store()
        while not self.stop.wait(0.1):
            try:
                if not store.collection_exists() or store.count() == 0:
                    continue
            except Exception:
                continue
            for process in psutil.Process().children(recursive=True):
                try:
                    if "_EmbedWriter" in " ".join(process.cmdline()):
                        os.kill(process.pid, signal.SIGKILL)
                        self.killed = process.pid
                        return
                except psutil.Error:
                    continue


@pytest.mark.parametrize("store", ["chroma", "milvus"])
def test_ray_ingest_matches_a_single_process_ingest_and_resumes(
    cluster: None, store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from medgraph.knowledge.ray_ingest import ingest_with_ray

    records = corpus_records(16)
    files = [
        write_jsonl(tmp_path / "in" / "a.jsonl", records[:9]),
        write_jsonl(tmp_path / "in" / "b.jsonl", records[9:]),
    ]
    server = (
        {"chroma_url": request.getfixturevalue("chroma_url")}
        if store == "chroma"
        else {"store": "milvus", "milvus_uri": request.getfixturevalue("milvus_uri")}
    )
    single_settings = KnowledgeSettings(
        index_dir=tmp_path / "single", store=server.get("store", "chroma")
    )
    with LiteratureIndex(single_settings) as single:
        expected = single.ingest(files, progress=False)

        settings = KnowledgeSettings(index_dir=tmp_path / "ray", collection="ray_ingest", **server)
        # One actor is killed after the first batch landed: Ray Data restarts it and retries
        # its batch, which skips what the dead actor had stored.
        killer = _ActorKiller(settings)
        killer.start()
        try:
            report = ingest_with_ray(settings, [tmp_path / "in"], workers=2, batch_documents=2)
        finally:
            killer.stop.set()
            killer.join(timeout=10)
        assert killer.killed is not None, "the ingest finished before an actor could be killed"
        assert report.ok and report.files == 2
        assert report.documents == 16
        with LiteratureIndex(settings) as distributed:
            _assert_same(distributed, single)
            # The driver died after some batches: a third of the chunks never reached the
            # server and the generation was left running. A rerun embeds only those.
            store = distributed._open_for_write()
            lost = sorted(_contents(distributed))[::3]
            store.delete(lost)
            store.set_state(ingest_state="running")
        again = ingest_with_ray(settings, files, workers=2, batch_documents=8)
        assert again.chunks_added == len(lost)
        assert again.chunks_unchanged == expected.chunks_added - len(lost)
        with LiteratureIndex(settings) as resumed:
            _assert_same(resumed, single)


def _ingest_command(files: Path, index_dir: Path, chroma: str) -> tuple[list[str], dict[str, str]]:
    """``medgraph ingest FILES --ray local`` with 8-chunk commits, and its environment."""
    env = {
        **os.environ,
        "MEDGRAPH_KNOWLEDGE__CHROMA_URL": chroma,
        "MEDGRAPH_KNOWLEDGE__COLLECTION": "ray-driver-killed",
        "MEDGRAPH_KNOWLEDGE__BATCH_SIZE": "8",
        "RAY_DISABLE_USAGE_STATS": "1",
    }
    command = [sys.executable, "-m", "medgraph", "ingest", str(files), "--ray", "local"]
    return [*command, "--index", str(index_dir)], env


def _kill_driver_when_stored(driver: subprocess.Popen[bytes], store: ChromaStore) -> int:
    """SIGKILL the driver and its local Ray cluster once chunks are stored; the count then.

    Ray's workers run in sessions of their own, so they are killed by process id: the driver and
    every process under it die at once, as when the machine running a local cluster goes down.
    """
    import psutil

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        try:
            stored = store.collection_exists() and store.count() > 0
        except Exception:  # the server is creating the collection: ask again
            stored = False
        if stored:
            tree = [psutil.Process(driver.pid)]
            tree += tree[0].children(recursive=True)
            for process in tree:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            driver.wait(timeout=30)  # reaped by Popen, which keeps its exit status
            psutil.wait_procs(tree[1:], timeout=30)
            time.sleep(1)  # an add already sent may still land on the server
            return store.count()
        time.sleep(0.05)
    raise AssertionError(f"the driver ended (status {driver.poll()}) before any chunk was stored")


# Two Ray clusters start one after the other: about 10 minutes on 2 cores under load 11.
@pytest.mark.timeout(1500)
def test_ray_ingest_resumes_after_the_driver_is_killed(chroma_url: str, tmp_path: Path) -> None:
    records = corpus_records(24)
    inputs = tmp_path / "in"
    for part in range(3):
        write_jsonl(inputs / f"part-{part}.jsonl", records[part * 8 : (part + 1) * 8])
    settings = KnowledgeSettings(
        index_dir=tmp_path / "ray", chroma_url=chroma_url, collection="ray-driver-killed"
    )
    with LiteratureIndex(KnowledgeSettings(index_dir=tmp_path / "single", batch_size=8)) as single:
        expected = single.ingest([inputs], progress=False)
        command, env = _ingest_command(inputs, settings.index_dir, chroma_url)
        store = ChromaStore(collection=settings.collection, url=chroma_url)
        with (tmp_path / "killed-driver.log").open("wb") as log:
            driver = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            stored = _kill_driver_when_stored(driver, store)
        assert driver.returncode == -signal.SIGKILL
        assert 0 < stored < expected.chunks_added, "the ingest finished before the kill"
        assert store.state()["ingest_state"] == "running"

        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        with LiteratureIndex(settings) as resumed:
            _assert_same(resumed, single)
            assert resumed._open_for_read().count() == expected.chunks_added
            lexical = LexicalIndex.load(settings.index_dir / "bm25")
            assert lexical is not None and len(set(lexical.ids)) == len(lexical.ids)
        # The rerun embedded only what the killed driver had not stored.
        counts = re.search(
            r"Chunks: (\d+) embedded.*?, (\d+) unchanged, (\d+) re-labelled", rerun.stdout
        )
        assert counts is not None, rerun.stdout
        embedded, unchanged, relabelled = (int(n) for n in counts.groups())
        assert embedded == expected.chunks_added - stored
        assert unchanged + relabelled == stored


def test_ray_ingest_needs_a_server_store(tmp_path: Path) -> None:
    from medgraph.errors import ConfigurationError
    from medgraph.knowledge.ray_ingest import ingest_with_ray

    with pytest.raises(ConfigurationError, match="chroma_url"):
        ingest_with_ray(KnowledgeSettings(index_dir=tmp_path), [tmp_path])
    # a Milvus Lite .db opens in one process only: the workers could not share it
    with pytest.raises(ConfigurationError, match=r"milvus_uri.*http://HOST:19530"):
        ingest_with_ray(KnowledgeSettings(index_dir=tmp_path, store="milvus"), [tmp_path])
