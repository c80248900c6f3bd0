"""Load time and resident memory when the image and text roles name the same checkpoint.

``context_from_settings`` makes one MedGemmaChat per role; the transformers engine keeps loaded
models in a process-wide cache, so two roles naming the same folder share one copy. Baseline in
the same run: the roles name two distinct copies of the same checkpoint (what two different
models of that size would cost). Each configuration runs in a fresh Python process, which loads
both roles (and generates a few tokens in each) and reports:

- load seconds (both roles, from constructing the parts to both engines built) and ready
  seconds (load plus one short answer from each role: weights are memory-mapped, so much of
  the reading happens on first use);
- resident memory (VmRSS from /proc/self/status) once both roles have answered, its growth
  over the process's baseline after imports, and the peak (VmHWM).

The checkpoint is a random-weight Gemma 3 multimodal model (MedGemma 4B's architecture, scaled
down; ~100M parameters by default, float32 on CPU) built in a temporary folder:

    python bench/model_sharing.py [--hidden-size 768] [--layers 12] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def memory_kib() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon and RssFile of this process in KiB (Linux /proc)."""
    status = Path("/proc/self/status")
    if not status.exists():
        raise SystemExit("model_sharing.py reads /proc/self/status and needs Linux")
    wanted = {"VmRSS", "VmHWM", "RssAnon", "RssFile"}
    values = {}
    for line in status.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in wanted:
            values[key] = int(rest.split()[0])
    return values


def build_checkpoint(folder: Path, hidden_size: int, layers: int, vision_layers: int) -> int:
    """Save a random Gemma3ForConditionalGeneration with a processor; return its parameter count."""
    import torch
    from transformers import Gemma3TextConfig, SiglipVisionConfig

    from tests.tiny_gemma import IMAGE_SIZE, PATCH_SIZE, build_tokenizer, save_multimodal

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    head_dim = 64
    heads = max(1, hidden_size // head_dim)
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 4),
        head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        max_position_embeddings=32768,
        sliding_window=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, _token_id(tokenizer, "<end_of_turn>")],
    )
    vision = SiglipVisionConfig(
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=vision_layers,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        vision_use_head=False,
    )
    model = save_multimodal(folder, tokenizer, text, vision)
    return sum(p.numel() for p in model.parameters())


def _token_id(tokenizer: Any, token: str) -> int:
    """The id of one special token."""
    return int(tokenizer.convert_tokens_to_ids(token))


class _NoIndex:
    """Stands in for the literature index, which this bench does not use."""

    def search(self, query: str, k: int = 10, mode: str = "hybrid", where: Any = None) -> list:  # type: ignore[type-arg]
        """No passages."""
        return []


def child(image_model: str, text_model: str) -> None:
    """Load both roles as the assistant does and print one JSON line of measurements."""
    from langchain_core.messages import HumanMessage

    from medgraph.agents.engines.transformers_engine import TransformersEngine
    from medgraph.graphs.assistant import context_from_settings
    from medgraph.settings import Settings

    baseline = memory_kib()
    settings = Settings(home=Path(tempfile.mkdtemp(prefix="medgraph-sharing-")))
    settings.models = settings.models.model_copy(
        update={
            "engine": "transformers",
            "image_model": image_model,
            "text_model": text_model,
            "dtype": "float32",
            "max_new_tokens": 4,
        }
    )
    started = time.perf_counter()
    parts = context_from_settings(settings, index=_NoIndex())  # type: ignore[arg-type]
    engines = []
    for role_model in (parts.image_model, parts.text_model):
        engine = getattr(role_model, "backend", None)
        assert isinstance(engine, TransformersEngine)
        engines.append(engine)
    load_s = time.perf_counter() - started
    loaded = memory_kib()
    answer_s = []
    for role_model in (parts.image_model, parts.text_model):
        assert role_model is not None
        asked = time.perf_counter()
        role_model.invoke([HumanMessage("Does aspirin reduce stroke risk?")])
        answer_s.append(time.perf_counter() - asked)
    ready_s = time.perf_counter() - started
    after_use = memory_kib()
    print(
        json.dumps(
            {
                "load_s": load_s,
                "ready_s": ready_s,
                "answer_s": answer_s,
                "baseline_kib": baseline,
                "loaded_kib": loaded,
                "after_use_kib": after_use,
                "shared_object": engines[0].loaded is engines[1].loaded,
            }
        )
    )


def run_child(image_model: Path, text_model: Path) -> dict[str, Any]:
    """One configuration in a fresh interpreter."""
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--image-model",
            str(image_model),
            "--text-model",
            str(text_model),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        cwd=ROOT,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    """Build the checkpoint (and a copy), measure both configurations, print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-size", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--vision-layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per configuration")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image-model", help=argparse.SUPPRESS)
    parser.add_argument("--text-model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.image_model, args.text_model)
        return

    with tempfile.TemporaryDirectory(prefix="medgraph-sharing-") as scratch:
        first = Path(scratch) / "gemma3-a"
        second = Path(scratch) / "gemma3-b"
        started = time.perf_counter()
        parameters = build_checkpoint(first, args.hidden_size, args.layers, args.vision_layers)
        shutil.copytree(first, second)
        size_mb = sum(f.stat().st_size for f in first.glob("*.safetensors")) / 2**20
        print(
            f"random Gemma 3 multimodal checkpoint: {parameters / 1e6:.1f}M parameters, "
            f"{size_mb:.0f} MB of safetensors (float32), hidden {args.hidden_size}, "
            f"{args.layers} layers; built in {time.perf_counter() - started:.1f} s"
        )
        runs: dict[str, list[dict[str, Any]]] = {"separate": [], "shared": []}
        for _ in range(args.repeats):  # alternate so drift affects both alike
            runs["separate"].append(run_child(first, second))
            runs["shared"].append(run_child(first, first))

    def median(name: str, pick: Any) -> float:
        return statistics.median(pick(r) for r in runs[name])

    rows = {}
    for name in runs:
        rows[name] = {
            "load": median(name, lambda r: r["load_s"]),
            "ready": median(name, lambda r: r["ready_s"]),
            "rss": median(name, lambda r: r["after_use_kib"]["VmRSS"] / 1024),
            "growth": median(
                name, lambda r: (r["after_use_kib"]["VmRSS"] - r["baseline_kib"]["VmRSS"]) / 1024
            ),
            "peak": median(name, lambda r: r["after_use_kib"]["VmHWM"] / 1024),
            "shared": all(r["shared_object"] for r in runs[name]),
        }
    base = rows["separate"]
    print(f"CPU threads={os.cpu_count()}, {args.repeats} fresh processes each (median)")
    print(
        f"\n{'image + text roles':40} {'load s':>7} {'ratio':>6} {'ready s':>8} {'ratio':>6} "
        f"{'RSS MB':>8} {'ratio':>6} "
        f"{'growth MB':>10} {'ratio':>6} {'peak MB':>8} {'one copy':>9}"
    )
    labels = {
        "separate": "two copies of the checkpoint (baseline)",
        "shared": "same checkpoint, shared",
    }
    for name, label in labels.items():
        row = rows[name]
        print(
            f"{label:40} {row['load']:7.2f} {row['load'] / base['load']:6.2f} "
            f"{row['ready']:8.2f} {row['ready'] / base['ready']:6.2f} "
            f"{row['rss']:8.0f} {row['rss'] / base['rss']:6.2f} {row['growth']:10.0f} "
            f"{row['growth'] / base['growth']:6.2f} {row['peak']:8.0f} {row['shared']!s:>9}"
        )
    print(
        "RSS = VmRSS once both roles have answered a question (weights are memory-mapped, so "
        "they become resident when first used); growth = that minus VmRSS after imports; "
        "peak = VmHWM; load s = constructing both roles' engines; ready s = load + "
        "one short answer from each role"
    )


if __name__ == "__main__":
    main()
