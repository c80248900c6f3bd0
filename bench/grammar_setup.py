"""Grammar setup over MedGemma's 262,144-token vocabulary (real Gemma 3 270M tokenizer), on CPU.

Baseline, measured in the same run: the setup as it was before the token table, rebuilt here step
by step: the fingerprint from the parsed tokenizer JSON (parse, drop padding and truncation,
re-serialise sorted, sha256), ``llguidance.hf.from_tokenizer``, and the closing-mode table from
one ``batch_decode`` of the vocabulary. Against it:
- cold: ``GrammarCompiler`` with an empty token-table cache (builds llguidance's tokenizer from
  the JSON and stores the table);
- warm: ``GrammarCompiler`` with the table stored (what every later process on the machine does).

    python bench/grammar_setup.py

Needs the real-weights fixture: ``python tests/real_gemma.py`` (downloads about 250 MB once).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llguidance.hf
import torch
from transformers import AutoTokenizer

from medgraph.agents.grammar import GrammarCompiler
from tests.real_gemma import checkpoint_folder

STOPS = [1, 106]  # <eos>, <end_of_turn>


def _timed(run: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def baseline_setup(tokenizer: Any, vocab: int) -> None:
    """The setup before the token table (fingerprint, llguidance tokenizer, closing table)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec.pop("padding", None)
    spec.pop("truncation", None)
    hashlib.sha256(json.dumps(spec, sort_keys=True).encode("utf-8")).hexdigest()
    llguidance.hf.from_tokenizer(tokenizer, n_vocab=max(vocab, len(tokenizer)), eos_token=STOPS)
    torch.full((vocab,), -1.0e4)
    texts = tokenizer.batch_decode([[i] for i in range(min(vocab, len(tokenizer)))])
    for text in texts:
        text.strip()


def main() -> None:
    """Print baseline, cold and warm setup seconds and their ratios."""
    torch.set_num_threads(1)
    folder = checkpoint_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    vocab = 262_144
    base_s, _ = _timed(lambda: baseline_setup(tokenizer, vocab))
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MEDGRAPH_GRAMMAR_CACHE"] = cache
        cold_s, cold = _timed(lambda: GrammarCompiler(tokenizer, vocab, STOPS))
        warm_s, warm = _timed(lambda: GrammarCompiler(tokenizer, vocab, STOPS))
    assert torch.equal(cold.bias, warm.bias)
    load = os.getloadavg()[0]
    print(f"grammar setup over {vocab} tokens (load average {load:.1f}, 1 torch thread)")
    print(f"  baseline (JSON fingerprint, hf.from_tokenizer, batch_decode table): {base_s:6.2f} s")
    print(f"  cold (empty token-table cache):  {cold_s:6.2f} s  {base_s / cold_s:5.2f}x faster")
    print(f"  warm (token table stored):       {warm_s:6.2f} s  {base_s / warm_s:5.2f}x faster")


if __name__ == "__main__":
    main()
