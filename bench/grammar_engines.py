"""llguidance against xgrammar on MedGemma's real 262,144-token vocabulary (Gemma 3 270M fixture).

For one tool-decision schema (medgraph's ``search_literature`` and ``bmi``, bounded as the chat
model bounds them), each engine is measured in the same run:
- tokenizer setup (once per model) and schema compile, in ms;
- per-token mask time, in microseconds, over a real decision and over random walks;
- decisions valid: random walks that pick a uniformly random allowed token at every step, until
  the grammar ends or the step cap (a random token is usually long, so a walk may run out of steps
  inside a 500-character string): walks that ended, and of those, how many validate;
- install size of the engine and the packages it alone pulls in, in MB.

    python bench/grammar_engines.py [--walks 20] [--cap 160]

Needs the real-weights fixture (``python tests/real_gemma.py``) and xgrammar (``pip install
medgraph[bench]``); llguidance is medgraph's grammar engine, measured with medgraph's own grammar.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jsonschema
import numpy as np
from transformers import AutoTokenizer

from medgraph.agents.grammar import json_grammar
from medgraph.agents.protocol import decision_schema, tool_specs
from medgraph.tools.calculators import CALCULATOR_TOOLS
from medgraph.tools.literature import build_search_literature_tool
from tests.real_gemma import checkpoint_folder

SAMPLE = (
    '{"tool_calls": [{"name": "search_literature", "arguments": {"query": "statins after '
    'ischaemic stroke", "k": 5}}, {"name": "bmi", "arguments": {"weight_kg": 81.5, '
    '"height_cm": 177}}]}'
)


class _NoIndex:
    def search(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


def _schema() -> dict[str, Any]:
    search = build_search_literature_tool(_NoIndex(), max_k=50)  # type: ignore[arg-type]
    bmi = next(tool for tool in CALCULATOR_TOOLS if tool.name == "bmi")
    schema = decision_schema(tool_specs([search, bmi]), "any")
    assert schema is not None
    return schema


def _package_mb(*names: str) -> float:
    total = 0
    for name in names:
        for file in importlib.metadata.distribution(name).files or []:
            path = Path(str(file.locate()))
            if path.is_file():
                total += path.stat().st_size
    return total / 1e6


class Engine:
    """One grammar engine behind a tiny common interface: a matcher per decision."""

    name: str
    packages: tuple[str, ...]
    new_matcher: Callable[[], Any]

    def allowed(self, matcher: Any) -> np.ndarray:
        """Allowed token ids at this step (the mask, computed by the engine)."""
        raise NotImplementedError

    def accept(self, matcher: Any, token: int) -> None:
        """Advance the matcher by ``token``."""
        raise NotImplementedError

    def done(self, matcher: Any) -> bool:
        """Whether the grammar has ended."""
        raise NotImplementedError


def _bits(mask: np.ndarray, vocab: int) -> np.ndarray:
    return np.flatnonzero(np.unpackbits(mask.view(np.uint8), bitorder="little")[:vocab])


class XGrammar(Engine):
    name = "xgrammar"
    packages = ("xgrammar", "triton", "apache-tvm-ffi")

    def __init__(self, tokenizer: Any, vocab: int, stops: list[int], schema: str) -> None:
        import xgrammar as xgr

        self.xgr, self.vocab = xgr, vocab
        started = time.perf_counter()
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab, stop_token_ids=stops)
        compiler = xgr.GrammarCompiler(info)
        self.setup_ms = (time.perf_counter() - started) * 1e3
        started = time.perf_counter()
        self.grammar = compiler.compile_json_schema(
            schema, any_whitespace=False, separators=(", ", ": "), strict_mode=True
        )
        self.compile_ms = (time.perf_counter() - started) * 1e3
        self.mask = xgr.allocate_token_bitmask(1, vocab)

    def new_matcher(self) -> Any:
        return self.xgr.GrammarMatcher(self.grammar)

    def allowed(self, matcher: Any) -> np.ndarray:
        matcher.fill_next_token_bitmask(self.mask, 0)
        return self.mask[0].numpy()

    def accept(self, matcher: Any, token: int) -> None:
        assert matcher.accept_token(token)

    def done(self, matcher: Any) -> bool:
        return bool(matcher.is_terminated())


class LLGuidance(Engine):
    name = "llguidance"
    packages = ("llguidance",)

    def __init__(self, tokenizer: Any, vocab: int, stops: list[int], schema: str) -> None:
        import llguidance
        import llguidance.hf
        import llguidance.torch

        self.llg, self.vocab = llguidance, vocab
        started = time.perf_counter()
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab, eos_token=stops)
        self.setup_ms = (time.perf_counter() - started) * 1e3
        started = time.perf_counter()
        # medgraph's own grammar: compact JSON, objects closed, numbers at most 6 decimals.
        self.grammar = json_grammar(json.loads(schema))
        self.start = llguidance.LLMatcher(self.tokenizer, self.grammar)  # compiles the grammar
        self.compile_ms = (time.perf_counter() - started) * 1e3
        self.mask = llguidance.torch.allocate_token_bitmask(1, vocab)

    def new_matcher(self) -> Any:
        return self.start.deep_copy()  # as medgraph does: one compile, a copy per decision

    def allowed(self, matcher: Any) -> np.ndarray:
        self.llg.torch.fill_next_token_bitmask(matcher, self.mask, 0)
        return self.mask[0].numpy()

    def accept(self, matcher: Any, token: int) -> None:
        assert matcher.consume_token(token), matcher.get_error()

    def done(self, matcher: Any) -> bool:
        return bool(matcher.is_stopped())


def _mask_us(engine: Engine, tokens: list[int]) -> float:
    matcher = engine.new_matcher()
    started = time.perf_counter()
    for token in tokens:
        engine.allowed(matcher)
        engine.accept(matcher, token)
    return (time.perf_counter() - started) / len(tokens) * 1e6


def _walks(
    engine: Engine, tokenizer: Any, schema: dict[str, Any], walks: int, cap: int, seed: int
) -> tuple[int, int, float]:
    rng = random.Random(seed)
    ended, valid, spent, steps = 0, 0, 0.0, 0
    for _ in range(walks):
        matcher = engine.new_matcher()
        tokens: list[int] = []
        while len(tokens) < cap and not engine.done(matcher):
            started = time.perf_counter()
            mask = engine.allowed(matcher)
            spent += time.perf_counter() - started
            choices = _bits(mask, engine.vocab)
            steps += 1
            token = int(choices[rng.randrange(len(choices))])
            engine.accept(matcher, token)
            tokens.append(token)
        if engine.done(matcher):
            ended += 1
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            try:
                jsonschema.validate(json.loads(text), schema)
                valid += 1
            except (ValueError, jsonschema.ValidationError):
                pass
    return ended, valid, spent / max(1, steps) * 1e6


def main() -> None:
    """Measure both engines and print one table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--walks", type=int, default=20)
    parser.add_argument("--cap", type=int, default=160)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_folder()))
    vocab = 262_144
    stops = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    schema = _schema()
    text = json.dumps(schema)
    sample = tokenizer(SAMPLE, add_special_tokens=False)["input_ids"]
    rows = []
    for kind in (XGrammar, LLGuidance):
        engine = kind(tokenizer, vocab, stops, text)
        mask = _mask_us(engine, sample)
        ended, valid, walk_mask = _walks(engine, tokenizer, schema, args.walks, args.cap, seed=0)
        rows.append(
            (
                engine.name,
                engine.setup_ms,
                engine.compile_ms,
                mask,
                walk_mask,
                f"{ended}/{args.walks}, {valid}/{ended}",
                _package_mb(*engine.packages),
            )
        )
    print(
        f"{'engine':<11} {'setup ms':>9} {'compile ms':>10} {'mask us (decision)':>18} "
        f"{'mask us (walks)':>15} {'walks ended, valid':>18} {'install MB':>10}"
    )
    for name, setup, compile_ms, mask, walk_mask, valid, size in rows:
        print(
            f"{name:<11} {setup:>9.0f} {compile_ms:>10.1f} {mask:>18.0f} {walk_mask:>15.0f} "
            f"{valid:>18} {size:>10.1f}"
        )
    xgr, llg = rows
    print(
        f"llguidance / xgrammar: compile {llg[2] / xgr[2]:.2f}x, mask {llg[3] / xgr[3]:.2f}x, "
        f"install {llg[6] / xgr[6]:.3f}x"
    )


if __name__ == "__main__":
    main()
