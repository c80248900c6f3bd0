"""Loading a GGUF file as a model: medgraph's ``load_model`` against plain transformers, same run.

Baseline: ``AutoTokenizer.from_pretrained`` and ``AutoModelForCausalLM.from_pretrained`` with
``gguf_file=`` (each builds the ``gguf`` package's reader and parses the whole file; the config is
parsed on the way too). medgraph: ``load_model`` on the file path, which reads it once
(``medgraph.agents.engines.gguf_reading``). Both load float32 weights on the CPU; the bench checks
that they hold the same weights and the same vocabulary, then prints seconds and the ratio.

    python bench/gguf_load.py [--rounds 1] [FILE.gguf]

Without a file it uses the real-weights fixture's Gemma 3 270M GGUF (``python tests/real_gemma.py``
downloads it once).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from medgraph.agents.engines.transformers_engine import clear_model_cache, load_model


def _plain(path: Path) -> tuple[float, object, object]:
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    return time.perf_counter() - started, tokenizer, model


def _medgraph(path: Path) -> tuple[float, object, object]:
    clear_model_cache()
    started = time.perf_counter()
    loaded = load_model(str(path), dtype="float32", device_map="cpu")
    return time.perf_counter() - started, loaded.tokenizer, loaded.model


def main() -> None:
    """Load the file both ways ``--rounds`` times, alternating, and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if args.file is None:
        from tests.real_gemma import gguf_file

        args.file = gguf_file()
    print(f"{args.file} ({args.file.stat().st_size / 1e6:.0f} MB), load {os.getloadavg()[0]:.1f}")
    for round_number in range(1, args.rounds + 1):
        plain_seconds, plain_tokenizer, plain_model = _plain(args.file)
        ours_seconds, ours_tokenizer, ours_model = _medgraph(args.file)
        same_vocabulary = plain_tokenizer.get_vocab() == ours_tokenizer.get_vocab()  # type: ignore[attr-defined]
        plain_state = plain_model.state_dict()  # type: ignore[attr-defined]
        same_weights = all(
            torch.equal(tensor, plain_state[name])
            for name, tensor in ours_model.state_dict().items()  # type: ignore[attr-defined]
        )
        print(
            f"round {round_number}: plain transformers {plain_seconds:.1f} s, "
            f"medgraph load_model {ours_seconds:.1f} s: {ours_seconds / plain_seconds:.2f}x "
            f"(same weights: {same_weights}, same vocabulary: {same_vocabulary})"
        )
        del plain_model, ours_model, plain_state
        clear_model_cache()
        gc.collect()


if __name__ == "__main__":
    main()
