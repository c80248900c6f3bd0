"""Tokens/s of MedGemmaChat on the tiny random Gemma 3 checkpoint, on this machine.

Baselines measured in the same run:
- batched: ``chat.batch(prompts)`` (one padded generate) against a loop of ``chat.invoke``;
- constrained: tool decisions under the grammar against free generation of the same length.
Also prints the tool-call validity over the prompts (schema-valid calls / prompts).

    python bench/chat_throughput.py [--prompts 32] [--tokens 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jsonschema
from langchain_core.tools import tool

from medgraph.agents import MedGemmaChat
from medgraph.agents.protocol import tool_specs
from tests.tiny_gemma import build_multimodal


@tool
def search_literature(query: str, k: int = 5) -> str:
    """Search the indexed literature."""
    return query


@tool
def body_mass_index(weight_kg: float, height_m: float) -> float:
    """Body mass index in kg/m2."""
    return weight_kg / height_m**2


def main() -> None:
    """Run the measurements and print one table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    prompts = [
        f"Question {i}: evidence on drug {i * 7} in renal failure?" for i in range(args.prompts)
    ]
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        model_dir = str(build_multimodal(Path(folder)))
        chat = MedGemmaChat(model=model_dir, max_new_tokens=args.tokens)
        chat.invoke("warm up")
        load = time.perf_counter() - started

        def timed(run: object) -> tuple[float, list]:  # type: ignore[type-arg]
            begin = time.perf_counter()
            replies = run()  # type: ignore[operator]
            return time.perf_counter() - begin, replies

        loop_s, loop_replies = timed(lambda: [chat.invoke(p) for p in prompts])
        batch_s, batch_replies = timed(lambda: chat.batch(prompts))
        tools = chat.bind_tools([search_literature, body_mass_index], tool_choice="any")
        tool_s, tool_replies = timed(lambda: tools.batch(prompts))

    def tokens(replies: list) -> int:  # type: ignore[type-arg]
        return sum(r.usage_metadata["output_tokens"] for r in replies)

    schemas = {s.name: s.parameters for s in tool_specs([search_literature, body_mass_index])}
    valid = 0
    for reply in tool_replies:
        try:
            for call in reply.tool_calls:
                jsonschema.validate(call["args"], schemas[call["name"]])
            valid += bool(reply.tool_calls) and not reply.invalid_tool_calls
        except jsonschema.ValidationError:
            pass
    loop_tps = tokens(loop_replies) / loop_s
    batch_tps = tokens(batch_replies) / batch_s
    tool_tps = tokens(tool_replies) / tool_s
    print(f"tiny Gemma 3 checkpoint, CPU threads={os.cpu_count()}, build+load {load:.1f} s")
    print(f"{'run':38} {'tokens/s':>10} {'ratio':>8}")
    print(f"{'invoke loop, batch 1 (baseline)':38} {loop_tps:10.1f} {1.0:8.2f}")
    label = f"batch() padded, batch {len(prompts)}"
    print(f"{label:38} {batch_tps:10.1f} {batch_tps / loop_tps:8.2f}")
    print(
        f"{'batch() + grammar tool decisions':38} {tool_tps:10.1f} {tool_tps / batch_tps:8.2f}"
        "  (vs unconstrained batch)"
    )
    print(f"schema-valid tool calls: {valid}/{len(prompts)}")


if __name__ == "__main__":
    main()
