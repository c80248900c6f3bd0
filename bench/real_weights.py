"""MedGemmaChat on real Gemma 3 weights (google/gemma-3-270m, 262,144-token vocabulary), on CPU.

Each ratio has its baseline measured in the same run:
- plain decoding: ``MedGemmaChat.invoke`` tokens/s against a bare ``model.generate`` on the same
  prompt and the same number of new tokens (target >= 0.9x);
- constrained decoding: seconds per token of ``generate`` under the decision grammar, with the
  grammar output layer as the engine runs it, against the same ``generate`` unconstrained,
  prefill subtracted from both (target <= 1.3x); and the same constrained decoding with every
  score computed (the layer's own gain, same tokens);
- the first token of a batch of tool decisions with the shared tool-list prefix prefilled once
  against the same batch with every row prefilled whole (``reuse_prefix=False``);
- grammar setup over the 262k vocabulary (llguidance tokenizer and the closing-mode table), a
  schema's first compile and its cached compile; peak resident memory.

    python bench/real_weights.py [--tokens 32] [--batch 6]

Needs the real-weights fixture: ``python tests/real_gemma.py`` (downloads about 250 MB once).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from langchain_core.messages import HumanMessage
from transformers import LogitsProcessorList

from medgraph.agents import MedGemmaChat
from medgraph.agents.conversation import to_conversation
from medgraph.agents.engines.base import GenerationRequest
from medgraph.agents.engines.grammar_output import grammar_output_layer
from medgraph.agents.engines.transformers_engine import TransformersEngine
from medgraph.agents.grammar import closing_bias
from medgraph.agents.protocol import decision_schema, render_tools_prompt, tool_specs
from medgraph.agents.token_table import table_from
from medgraph.tools.calculators import CALCULATOR_TOOLS
from medgraph.tools.literature import build_search_literature_tool
from tests.real_gemma import checkpoint_folder

QUESTION = "What is the first-line treatment for type 2 diabetes in adults?"
QUESTIONS = [
    QUESTION,
    "Compute the BMI of a man weighing 82 kg who is 178 cm tall.",
    "hello",
    "Do statins reduce mortality after an ischaemic stroke?",
    "¿Cuál es el tratamiento de la neumonía adquirida en la comunidad?",
    "x" * 300,
    "Steroids in COPD exacerbations: how long should the course be?",
    "Is CT angiography accurate for pulmonary embolism?",
]


class _NoIndex:
    def search(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


def _timed(run: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    """Run the measurements and print one table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=6)
    args = parser.parse_args()
    folder = str(checkpoint_folder())
    chat = MedGemmaChat(model=folder, max_new_tokens=args.tokens)
    engine = chat.backend
    assert isinstance(engine, TransformersEngine)
    model, tokenizer = engine.loaded.model, engine.loaded.tokenizer
    search = build_search_literature_tool(_NoIndex(), max_k=50)  # type: ignore[arg-type]
    bmi = next(tool for tool in CALCULATOR_TOOLS if tool.name == "bmi")
    specs = tool_specs([search, bmi])
    schema = decision_schema(specs, "any")
    assert schema is not None
    rows: list[tuple[str, str]] = []

    # Grammar setup over the real vocabulary, then a schema's first and cached compile.
    vocab = model.config.vocab_size
    setup_s, grammar = _timed(lambda: engine.loaded.grammar)
    tokens = table_from(grammar.tokenizer, grammar.tokenizer.vocab_size).tokens
    table_s, _ = _timed(lambda: closing_bias(tokens, vocab))
    first_s, _ = _timed(lambda: engine.loaded.grammar.compile(schema))
    cached_s, _ = _timed(lambda: engine.loaded.grammar.compile(schema))
    rows += [
        ("grammar setup (tokenizer info + closing table)", f"{setup_s:.2f} s"),
        ("  of which the closing table", f"{table_s:.2f} s"),
        ("schema compile, first / cached", f"{first_s * 1e3:.1f} ms / {cached_s * 1e3:.3f} ms"),
    ]

    # Plain decoding: MedGemmaChat against a bare generate, same prompt, same new tokens.
    chat.invoke("warm up")
    chat_s, reply = _timed(lambda: chat.invoke(QUESTION))
    new_tokens = int(reply.usage_metadata["output_tokens"])
    prompt = engine._prompt(to_conversation([HumanMessage(QUESTION)]))
    inputs = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    greedy = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}

    def bare(tokens: int, **extra: Any) -> Any:
        with torch.inference_mode():
            return model.generate(
                **inputs, max_new_tokens=tokens, min_new_tokens=tokens, **greedy, **extra
            )

    bare_s, _ = _timed(lambda: bare(new_tokens))
    ratio = (new_tokens / chat_s) / (new_tokens / bare_s)
    rows.append(
        (
            f"plain decode, {new_tokens} tokens: MedGemmaChat / bare generate",
            f"{new_tokens / chat_s:.1f} / {new_tokens / bare_s:.1f} tok/s = {ratio:.2f}x",
        )
    )

    # Constrained against unconstrained decoding, per token, prefill subtracted from both.
    tools_prompt = engine._prompt(
        to_conversation([HumanMessage(QUESTION)], system_suffix=render_tools_prompt(specs, "any"))
    )
    inputs = tokenizer(tools_prompt, add_special_tokens=False, return_tensors="pt")
    prefill_s, _ = _timed(lambda: bare(1))
    budget = 64

    def constrained(output_layer: bool) -> tuple[float, Any]:
        processor = engine.loaded.grammar.processor([schema], [budget])
        layer = grammar_output_layer(model, processor) if output_layer else contextlib.nullcontext()
        with torch.inference_mode(), layer:
            started = time.perf_counter()
            output = model.generate(
                **inputs,
                max_new_tokens=budget,
                logits_processor=LogitsProcessorList([processor]),
                **greedy,
            )
            return time.perf_counter() - started, output

    layer_s, output = constrained(output_layer=True)
    whole_s, whole = constrained(output_layer=False)
    produced = output.shape[1] - inputs["input_ids"].shape[1]
    free_s, _ = _timed(lambda: bare(produced))
    per_layer, per_whole, per_free = (
        (seconds - prefill_s) / max(1, produced - 1) for seconds in (layer_s, whole_s, free_s)
    )
    rows.append(
        (
            f"decode per token, {produced} tokens: constrained (as medgraph runs it) / "
            "unconstrained",
            f"{per_layer * 1e3:.0f} / {per_free * 1e3:.0f} ms = {per_layer / per_free:.2f}x",
        )
    )
    rows.append(
        (
            "constrained per token: grammar output layer / every score computed",
            f"{per_layer * 1e3:.0f} / {per_whole * 1e3:.0f} ms = {per_layer / per_whole:.2f}x "
            f"(same tokens: {bool(torch.equal(output, whole))})",
        )
    )

    # A batch of decisions, to its first token (what prefix reuse changes is the prefill): the
    # shared tool-list prefix prefilled once against every row prefilled whole.
    suffix = render_tools_prompt(specs, "any")
    requests = [
        GenerationRequest(
            to_conversation([HumanMessage(q)], system_suffix=suffix), 1, json_schema=schema
        )
        for q in (QUESTIONS * 4)[: args.batch]
    ]
    plain_engine = TransformersEngine(folder, reuse_prefix=False)
    plain_s, plain = _timed(lambda: plain_engine.generate(requests))
    engine.loaded.prefixes.clear()
    reuse_s, reused = _timed(lambda: engine.generate(requests))
    same = sum(a.text == b.text for a, b in zip(plain, reused, strict=True))
    rows.append(
        (
            f"first token of {len(requests)} decisions: prefix reused / every row prefilled",
            f"{reuse_s:.1f} / {plain_s:.1f} s = {reuse_s / plain_s:.2f}x "
            f"({same}/{len(requests)} identical)",
        )
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak resident memory", f"{peak_mb:.0f} MB"))
    rows.append(("torch threads", str(torch.get_num_threads())))

    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
