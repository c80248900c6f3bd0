"""Load test of ``medgraph serve``: 20 concurrent extractive chats over HTTP.

Starts ``python -m medgraph serve --model none --no-web`` in a subprocess over an index of the
first ``--docs`` shared PubMedQA abstracts (packaged MiniLM embeddings; the abstracts behind the
first 20 dev questions are always included) built into a temp folder. Then ``--rounds`` rounds:
in each, ``--concurrency`` conversations (one per dev question) send one chat at the same time
(round 1 the question, later rounds a follow-up in the same conversation), through the official
``openai`` async client. Prints requests/s and p50/p95 latency.

Baseline measured in the same run, before the server starts: the same questions through
``Assistant.ask`` in-process, one after another (no HTTP, no concurrency). The ratio compares
the server's throughput with it.

    python bench/serve_load.py [--docs 200] [--concurrency 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import openai  # noqa: E402

from medgraph.assistant import Assistant  # noqa: E402
from medgraph.knowledge.index import LiteratureIndex  # noqa: E402
from medgraph.settings import Settings  # noqa: E402
from tests.support import shared_data_dir  # noqa: E402


def _records(docs: int, pmids: set[str]) -> list[str]:
    lines = (
        (shared_data_dir() / "pubmedqa" / "corpus.jsonl").read_text(encoding="utf-8").split("\n")
    )
    lines = [line for line in lines if line.strip()]
    wanted = [line for line in lines if json.loads(line)["pmid"] in pmids]
    rest = [line for line in lines if json.loads(line)["pmid"] not in pmids]
    return wanted + rest[: max(0, docs - len(wanted))]


def _questions(count: int) -> list[dict[str, str]]:
    lines = (shared_data_dir() / "pubmedqa" / "dev.jsonl").read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in lines if line.strip()][:count]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _summary(name: str, latencies: list[float], seconds: float) -> float:
    rate = len(latencies) / seconds
    print(
        f"{name}: {len(latencies)} requests in {seconds:.1f} s = {rate:.2f} requests/s; "
        f"latency p50 {_percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p95 {_percentile(latencies, 0.95) * 1000:.0f} ms, "
        f"mean {statistics.mean(latencies) * 1000:.0f} ms"
    )
    return rate


def baseline(settings: Settings, prompts: list[list[str]]) -> tuple[list[float], float]:
    """Every prompt through ``Assistant.ask`` in-process, sequentially (the same threads)."""
    latencies = []
    with Assistant(settings) as assistant:
        assistant.ask("warm-up: does aspirin reduce mortality?")
        started = time.perf_counter()
        for conversation, turns in enumerate(prompts):
            for turn in turns:
                begun = time.perf_counter()
                assistant.ask(turn, thread_id=f"baseline-{conversation}")
                latencies.append(time.perf_counter() - begun)
        return latencies, time.perf_counter() - started


async def load(url: str, prompts: list[list[str]]) -> tuple[list[float], float, int]:
    """Round by round, every conversation sends its next turn at the same time."""
    client = openai.AsyncOpenAI(
        base_url=f"{url}/v1",
        api_key="bench",
        max_retries=0,
        timeout=300,
    )  # the client's default pool allows far more than 20 connections
    latencies: list[float] = []
    cited = 0

    async def one(conversation: int, text: str) -> None:
        nonlocal cited
        begun = time.perf_counter()
        completion = await client.chat.completions.create(
            model="medgraph",
            messages=[{"role": "user", "content": text}],
            extra_headers={"X-Conversation-Id": f"load-{conversation}"},
        )
        latencies.append(time.perf_counter() - begun)
        cited += bool((completion.model_extra or {}).get("citations"))

    await one(-1, "warm-up: does aspirin reduce mortality?")
    latencies.clear()
    cited = 0
    started = time.perf_counter()
    for round_number in range(len(prompts[0])):
        await asyncio.gather(*(one(c, turns[round_number]) for c, turns in enumerate(prompts)))
    seconds = time.perf_counter() - started
    await client.close()
    return latencies, seconds, cited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=200, help="PubMedQA abstracts indexed.")
    parser.add_argument("--concurrency", type=int, default=20, help="Concurrent conversations.")
    parser.add_argument("--rounds", type=int, default=5, help="Turns per conversation.")
    args = parser.parse_args()

    questions = _questions(args.concurrency)
    prompts = [
        [q["question"]]
        + [f"Follow-up {r}: what did that study measure?" for r in range(1, args.rounds)]
        for q in questions
    ]
    with tempfile.TemporaryDirectory(prefix="medgraph-serve-load-") as folder:
        root = Path(folder)
        corpus = root / "corpus.jsonl"
        corpus.write_text("\n".join(_records(args.docs, {q["pmid"] for q in questions})) + "\n")
        settings = Settings(home=root / "home")
        settings.models = settings.models.model_copy(update={"engine": "extractive"})
        settings.knowledge = settings.knowledge.model_copy(update={"index_dir": root / "index"})
        started = time.perf_counter()
        with LiteratureIndex(settings.knowledge) as index:
            report = index.ingest([corpus], progress=sys.stderr.isatty())
        print(
            f"Index: {report.index_documents} PubMedQA abstracts, {report.index_chunks} chunks "
            f"(packaged MiniLM), built in {time.perf_counter() - started:.1f} s"
        )
        total = args.concurrency * args.rounds
        print(f"Workload: {args.concurrency} conversations x {args.rounds} turns = {total} chats")

        base_latencies, base_seconds = baseline(settings, prompts)
        base_rate = _summary(
            "baseline (Assistant.ask in-process, sequential)", base_latencies, base_seconds
        )

        port = _free_port()
        env = {**os.environ, "MEDGRAPH_HOME": str(root / "serve-home")}
        env.pop("MEDGRAPH_API_KEYS", None)
        command = [sys.executable, "-m", "medgraph", "serve", "--model", "none", "--no-web"]
        command += ["--index", str(root / "index"), "--port", str(port)]
        log_path = root / "serve.log"
        with log_path.open("w") as log:
            server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
            url = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 180
                while True:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"medgraph serve did not start:\n{log_path.read_text()}")
                    try:
                        health = httpx.get(f"{url}/v1/health", timeout=2).json()
                        break
                    except httpx.TransportError:
                        time.sleep(0.3)
                print(f"Server: {health['engine']}, generation slots {health['generations']}")
                latencies, seconds, cited = asyncio.run(load(url, prompts))
            finally:
                server.terminate()
                server.wait(timeout=30)
        rate = _summary(
            f"medgraph serve ({args.concurrency} concurrent chats over HTTP)", latencies, seconds
        )
        print(f"Answers with citations: {cited}/{len(latencies)}")
        print(f"Throughput ratio serve / baseline: {rate / base_rate:.2f}x")


if __name__ == "__main__":
    main()
