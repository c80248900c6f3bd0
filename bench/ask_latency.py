"""Cold and warm latency of ``medgraph ask``, and the supported fraction of extractive answers.

Baselines in the same run: the warm in-process ask is compared with the cold command (a fresh
process that loads the index, the embedder and the models). Engines: extractive, and the tiny
random-weight Gemma 3 checkpoints in both roles (MedGemma's code path, not its speed).
Also prints the mean supported fraction and the gold-abstract citation rate over the first 50
PubMedQA dev questions in extractive mode.

    python bench/ask_latency.py [--questions 50]

The index is built once in .medgraph/bench-index (incremental: later runs embed nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medgraph.assistant import Assistant  # noqa: E402
from medgraph.knowledge.index import LiteratureIndex  # noqa: E402
from medgraph.settings import Settings  # noqa: E402
from tests.support import shared_data_dir  # noqa: E402
from tests.tiny_gemma import build_multimodal, build_text_only  # noqa: E402

QUESTION = "Do mitochondria play a role in programmed cell death in lace plant leaves?"


def cold_ask(index: Path, home: Path, *model_args: str) -> float:
    """Seconds for one ``medgraph ask`` in a fresh process."""
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "medgraph",
            "ask",
            QUESTION,
            "--index",
            str(index),
            "--json",
            *model_args,
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "MEDGRAPH_HOME": str(home)},
        cwd=ROOT,
    )
    return time.perf_counter() - started


def warm_ask(settings: Settings, repeats: int = 3) -> float:
    """Median seconds of an in-process ask after a first (warming) one."""
    with Assistant(settings) as assistant:
        assistant.ask(QUESTION)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            assistant.ask(QUESTION)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    """Build the index if needed, measure, print one table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=50)
    args = parser.parse_args()
    data = shared_data_dir() / "pubmedqa"
    index_dir = ROOT / ".medgraph" / "bench-index"
    with LiteratureIndex(index_dir=index_dir) as index:
        report = index.ingest([data / "corpus.jsonl"], progress=False)
    print(f"index: {report.summary(problems=False).splitlines()[-1]}")
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "home"
        base = Settings(home=home)
        base.knowledge = base.knowledge.model_copy(update={"index_dir": index_dir})
        extractive = base.model_copy(deep=True)
        extractive.models = extractive.models.model_copy(update={"engine": "extractive"})
        image_dir = str(build_multimodal(Path(scratch) / "tiny-4b"))
        text_dir = str(build_text_only(Path(scratch) / "tiny-27b"))
        tiny = base.model_copy(deep=True)
        tiny.models = tiny.models.model_copy(
            update={"image_model": image_dir, "text_model": text_dir, "max_new_tokens": 96}
        )
        rows = [
            ("extractive", cold_ask(index_dir, home, "--model", "none"), warm_ask(extractive)),
            (
                "tiny Gemma 3 (both roles)",
                cold_ask(index_dir, home, "--image-model", image_dir, "--text-model", text_dir),
                warm_ask(tiny),
            ),
        ]
        print(f"\n{'engine':28} {'cold s':>8} {'warm s':>8} {'warm/cold':>10}")
        for name, cold, warm in rows:
            print(f"{name:28} {cold:8.2f} {warm:8.2f} {warm / cold:10.3f}")
        lines = (data / "dev.jsonl").read_text(encoding="utf-8").split("\n")
        questions = [json.loads(line) for line in lines if line.strip()][: args.questions]
        fractions, gold = [], 0
        with Assistant(extractive) as assistant:
            for item in questions:
                answer = assistant.ask(item["question"])
                fractions.append(answer.verification.supported_fraction)
                gold += str(item["pmid"]) in {c.source_id for c in answer.citations}
        print(
            f"\nextractive over {len(questions)} PubMedQA dev questions: mean supported fraction "
            f"{statistics.mean(fractions):.3f} (min {min(fractions):.2f}); gold abstract cited in "
            f"{gold}/{len(questions)}"
        )


if __name__ == "__main__":
    main()
