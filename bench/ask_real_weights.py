"""``medgraph ask --model <real Gemma 3 270M> --index IDX --json``, step by step, on CPU.

Runs the CLI's own code in this process with every generation timed (prompt tokens, new tokens,
seconds, and the kind of call: reasoner step, writer, judge), on an index of the first 24
PubMedQA abstracts (the lace plant study first), with ``search_first`` on as the e2e test has it.
Prints the whole command's seconds, the turn limit, the answer's limits and how each sentence was
checked. The grammar setup (first constrained generation) is timed apart.

    python bench/ask_real_weights.py [--turn-seconds 90] [--replay]

The baseline of each lever is measured in the same run by the lever's own bench where one exists
(bench/grammar_setup.py); this script reports the end-to-end breakdown. ``--replay`` then runs the
ask's generations again, in order and with no deadline, once with prompt-prefix reuse and once
without (the baseline), and prints each one's seconds, the ratio and whether the replies match.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from medgraph.agents.engines import transformers_engine  # noqa: E402
from medgraph.agents.grammar import GrammarCompiler  # noqa: E402
from tests.real_gemma import checkpoint_folder  # noqa: E402
from tests.support import shared_data_dir  # noqa: E402

QUESTION = "Do mitochondria play a role in programmed cell death in lace plant leaves?"
RECORDS = 24
INDEX = Path.home() / ".cache" / "medgraph" / "bench" / f"ask-real-weights-{RECORDS}"


def build_index() -> Path:
    """The 24-abstract index (built once with ``medgraph ingest``)."""
    if (INDEX / "done").is_file():
        return INDEX / "index"
    INDEX.mkdir(parents=True, exist_ok=True)
    with (shared_data_dir() / "pubmedqa" / "corpus.jsonl").open(encoding="utf-8") as source:
        lines = [next(source) for _ in range(RECORDS)]
    corpus = INDEX / "corpus.jsonl"
    corpus.write_text("".join(lines), encoding="utf-8")
    command = [sys.executable, "-m", "medgraph", "ingest", str(corpus), "--index"]
    subprocess.run([*command, str(INDEX / "index")], check=True, cwd=ROOT)
    (INDEX / "done").write_text("")
    return INDEX / "index"


def _kind(request: Any) -> str:
    schema = request.json_schema or {}
    properties = schema.get("properties", {})
    if "sentences" in properties:
        return "writer"
    if "supported" in properties:
        return "judge"
    return "reasoner" if schema else "free text"


def instrument(steps: list[dict[str, Any]]) -> None:
    """Record every generation (its requests too) and the grammar setup into ``steps``."""
    generate = transformers_engine.TransformersEngine.generate
    compiler_init = GrammarCompiler.__init__

    def timed_generate(self: Any, requests: Any) -> Any:
        started = time.perf_counter()
        completions = generate(self, requests)
        steps.append(
            {
                "step": "+".join(sorted({_kind(r) for r in requests})),
                "rows": len(requests),
                "prompt_tokens": sum(c.prompt_tokens for c in completions),
                "new_tokens": sum(c.completion_tokens for c in completions),
                "seconds": time.perf_counter() - started,
                "requests": list(requests),
            }
        )
        return completions

    def timed_setup(self: Any, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        compiler_init(self, *args, **kwargs)
        steps.append({"step": "grammar setup", "seconds": time.perf_counter() - started})

    transformers_engine.TransformersEngine.generate = timed_generate  # type: ignore[method-assign]
    GrammarCompiler.__init__ = timed_setup  # type: ignore[method-assign]


def replay(model: Path, steps: list[dict[str, Any]]) -> None:
    """The ask's generations again, each once with prefix reuse and once without (the
    baseline), one after the other so that both see the same load. The deadline is far off:
    both prefill in the same chunks as the ask does, and neither is cut."""
    from medgraph.agents.engines.transformers_engine import TransformersEngine

    recorded = [step for step in steps if "requests" in step]
    far = time.time() + 86_400
    engines = {reuse: TransformersEngine(str(model), reuse_prefix=reuse) for reuse in (False, True)}
    engines[True].loaded.prefixes.clear()
    totals = {False: 0.0, True: 0.0}
    same = rows = 0
    print("replay: prefix reuse / none (baseline), same prompts, each pair back to back")
    for step in recorded:
        requests = [dataclasses.replace(r, deadline=far) for r in step["requests"]]
        seconds, texts = {}, {}
        for reuse in (False, True):
            started = time.perf_counter()
            texts[reuse] = [c.text for c in engines[reuse].generate(requests)]
            seconds[reuse] = time.perf_counter() - started
            totals[reuse] += seconds[reuse]
        same += sum(a == b for a, b in zip(texts[True], texts[False], strict=True))
        rows += len(requests)
        print(
            f"  {step['step']:<14} {step['prompt_tokens']:5d} tokens  "
            f"{seconds[True]:6.1f} / {seconds[False]:6.1f} s"
        )
    on, off = totals[True], totals[False]
    print(f"  in all: {on:.1f} / {off:.1f} s = {on / off:.2f}x, load {os.getloadavg()[0]:.1f}")
    print(f"  replies identical: {same}/{rows}")


def main() -> None:
    """Run one ask and print its breakdown."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--turn-seconds", type=float, default=None, help="default: the setting's")
    parser.add_argument("--replay", action="store_true", help="time prefix reuse against none")
    args = parser.parse_args()
    torch.set_num_threads(1)
    index, model = build_index(), checkpoint_folder()
    home = Path(tempfile.mkdtemp(prefix="medgraph-bench-"))
    os.environ.update({"MEDGRAPH_HOME": str(home), "MEDGRAPH_GRAPH__SEARCH_FIRST": "true"})
    if args.turn_seconds is not None:
        os.environ["MEDGRAPH_GRAPH__MAX_TURN_SECONDS"] = str(args.turn_seconds)
    import medgraph.cli  # noqa: F401  (registers the commands)
    from medgraph.cli.app import app

    steps: list[dict[str, Any]] = []
    instrument(steps)
    out = home / "answer.json"
    started = time.perf_counter()
    with out.open("w") as stdout:
        saved, sys.stdout = sys.stdout, stdout
        try:
            app(["ask", QUESTION, "--model", str(model), "--index", str(index), "--json"],
                standalone_mode=False)  # fmt: skip
        finally:
            sys.stdout = saved
    total = time.perf_counter() - started
    answer = json.loads(out.read_text())
    print(f"ask: {total:.1f} s in all, load average {os.getloadavg()[0]:.1f} (1 torch thread)")
    for step in steps:
        tokens = (
            f"{step['prompt_tokens']:5d}+{step['new_tokens']:3d} tokens" if "rows" in step else ""
        )
        print(f"  {step['step']:<14} {tokens:<18} {step['seconds']:6.1f} s")
    methods = [s["method"] for s in answer["verification"]["sentences"]]
    print(f"route: {answer['route']}")
    print(f"limits: {answer['limits']}")
    print(f"checks: {methods}; citations: {len(answer['citations'])}")
    if args.replay:
        replay(model, steps)


if __name__ == "__main__":
    main()
