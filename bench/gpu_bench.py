"""Throughput of MedGemma 4B's architecture on one GPU, with random weights and no download.

Builds ``Gemma3ForConditionalGeneration`` with google/medgemma-4b-it's exact configuration
(:func:`medgemma_4b_config`) directly on the device in bf16 with random weights, feeds random
token ids (no tokenizer needed) and measures, on the path medgraph's transformers engine takes
(``model.generate``, greedy, left-padded batches):

- prefill and decode tokens/s at batch 1, 8 and 32, with the default dynamic cache (baseline)
  and with ``cache_implementation="static"``, for which transformers compiles the decoding
  forward with ``torch.compile`` (mode ``reduce-overhead``) on CUDA;
- peak GPU memory of each cell, weights included (``torch.cuda.max_memory_allocated``);
- vision encoding time per 896x896 image (SigLIP tower + projector, batch 1 and 8).

Prefill tokens/s is batch x prompt length over the time of ``generate(max_new_tokens=1)``;
decode tokens/s is batch x (new tokens - 1) over the extra time ``generate(max_new_tokens=N)``
takes. A global time guard (``--budget-s``) skips the remaining cells, with a note, rather than
overrun. ``--device cpu --tiny`` runs a scaled-down config of the same architecture in seconds
(a mechanics check; torch.compile is skipped on CPU). ``bench/gpu.sh`` is the ready wrapper.

    python bench/gpu_bench.py [--prompt 512] [--new-tokens 128] [--budget-s 400] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import transformers
from transformers import Gemma3Config, Gemma3ForConditionalGeneration

BATCHES = (1, 8, 32)
DEFAULT_MODE = "default (dynamic cache)"
STATIC_MODE = "static cache + compile"

# google/medgemma-4b-it is Gemma 3 4B's architecture (its model card: "MedGemma 4B ... Gemma 3",
# SigLIP image encoder, images normalised to 896x896 and encoded to 256 tokens). The values below
# are Gemma 3 4B's config.json, cross-checked against two public copies:
# - huggingface.co/simaai/gemma-3-4b-it-a16w4 devkit/vlm_config.json (vision: SigLIP 896 px,
#   patch 14, hidden 1152, intermediate 4304, 27 layers, 16 heads; text: vocab 262208, hidden
#   2560, intermediate 10240, 34 layers, 8 heads, 4 KV heads, head_dim 256, sliding window 1024,
#   query_pre_attn_scalar 256, rope theta 1e6 with linear scaling 8.0, local theta 1e4;
#   mm_tokens_per_image 256), and
# - a test in a public repository quoting gemma-3-4b-it's config.json (the same text/vision values,
#   boi 255999, eoi 256000, image token 262144) and its advertised size, 4.30e9 parameters.
# Published size of google/medgemma-4b-it: 4.3B parameters (featherless.ai/models/google/
# medgemma-4b-it, "Model Size: 4.3B"); this config has 4,300,079,472 (tests/bench check it).
MEDGEMMA_4B_TEXT: dict[str, Any] = {
    "vocab_size": 262_208,
    "hidden_size": 2560,
    "intermediate_size": 10_240,
    "num_hidden_layers": 34,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "query_pre_attn_scalar": 256,
    "sliding_window": 1024,
    "sliding_window_pattern": 6,
    "max_position_embeddings": 131_072,
    "rope_theta": 1_000_000.0,
    "rope_local_base_freq": 10_000.0,
    "rope_scaling": {"rope_type": "linear", "factor": 8.0},
    "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-6,
    "attention_bias": False,
    "pad_token_id": 0,
    "bos_token_id": 2,
    "eos_token_id": [1, 106],
}
MEDGEMMA_4B_VISION: dict[str, Any] = {
    "model_type": "siglip_vision_model",
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 896,
    "patch_size": 14,
    "layer_norm_eps": 1e-6,
    "vision_use_head": False,
}
MEDGEMMA_4B_TOKENS: dict[str, Any] = {
    "mm_tokens_per_image": 256,
    "boi_token_index": 255_999,
    "eoi_token_index": 256_000,
    "image_token_index": 262_144,
}
MEDGEMMA_4B_PARAMETERS = 4.3e9  # published size, see above

# Same architecture, scaled down for --tiny (CPU mechanics check): 6 layers keep the 5:1
# sliding/global pattern, a 16-token window is exceeded by the prompt, 224 px images, a 4096-token
# vocabulary (the image tokens moved inside it).
TINY_TEXT = {
    **MEDGEMMA_4B_TEXT,
    "vocab_size": 4096,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 6,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "query_pre_attn_scalar": 32,
    "sliding_window": 16,
}
TINY_VISION = {
    **MEDGEMMA_4B_VISION,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 224,
}
TINY_TOKENS = {
    "mm_tokens_per_image": 16,
    "boi_token_index": 4000,
    "eoi_token_index": 4001,
    "image_token_index": 4002,
}


def medgemma_4b_config(tiny: bool = False) -> Gemma3Config:
    """google/medgemma-4b-it's configuration (``tiny``: the same architecture, scaled down)."""
    text, vision, tokens = (
        (TINY_TEXT, TINY_VISION, TINY_TOKENS)
        if tiny
        else (MEDGEMMA_4B_TEXT, MEDGEMMA_4B_VISION, MEDGEMMA_4B_TOKENS)
    )
    return Gemma3Config(text_config=dict(text), vision_config=dict(vision), **tokens)


def build_random_model(
    config: Gemma3Config, device: torch.device, dtype: torch.dtype
) -> Gemma3ForConditionalGeneration:
    """The model with random weights, allocated and initialised on ``device`` (nothing loaded)."""
    with torch.device(device):
        model = Gemma3ForConditionalGeneration._from_config(config, dtype=dtype)
    return model.eval()


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


@dataclass
class Row:
    """One line of the table."""

    mode: str
    batch: int
    prefill_tps: float | None = None
    decode_tps: float | None = None
    peak_gib: float | None = None
    ms_per_image: float | None = None
    note: str = ""


class OutOfTime(Exception):
    """The time budget ran out (or the process was asked to stop)."""


class Bench:
    """Runs the cells under one time budget."""

    def __init__(
        self, model: Gemma3ForConditionalGeneration, args: argparse.Namespace, started: float
    ) -> None:
        self.model = model
        self.args = args
        self.device = model.device
        self.rows: list[Row] = []
        self.deadline = started + args.budget_s
        self.generator = torch.Generator(device="cpu").manual_seed(0)

    def remaining(self) -> float:
        """Seconds left in the budget."""
        return self.deadline - time.perf_counter()

    def sync(self) -> None:
        """Wait for the device."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        """Start a new peak-memory window."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        """Peak allocated GPU memory since :meth:`reset_peak`."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated() / 2**30
        return None

    def timed(self, run: Callable[[], Any], repeats: int) -> float:
        """Median seconds of ``run`` (device-synchronised)."""
        times = []
        for _ in range(repeats):
            self.sync()
            started = time.perf_counter()
            run()
            self.sync()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    def prompts(self, batch: int) -> dict[str, torch.Tensor]:
        """Random ordinary token ids (below Gemma's image tokens), no padding."""
        first_image_token = int(self.model.config.boi_token_index or 255_999)
        shape = (batch, self.args.prompt)
        ids = torch.randint(3, first_image_token, shape, generator=self.generator)
        return {
            "input_ids": ids.to(self.device),
            "attention_mask": torch.ones_like(ids).to(self.device),
        }

    def generate(self, inputs: dict[str, torch.Tensor], new_tokens: int, static: bool) -> None:
        """``model.generate`` with the engine's greedy settings, exactly ``new_tokens`` long."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": new_tokens,
            "min_new_tokens": new_tokens,
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
            "pad_token_id": 0,
        }
        if static:
            kwargs["cache_implementation"] = "static"
            if self.device.type != "cuda":
                kwargs["disable_compile"] = True  # inductor on CPU would dominate a quick check
        with torch.inference_mode():
            self.model.generate(**inputs, **kwargs)

    def text_cell(self, mode: str, batch: int, estimate_s: float) -> float:
        """Measure one (cache mode, batch) cell; return the seconds it took."""
        if self.remaining() < estimate_s:
            self.rows.append(
                Row(
                    mode,
                    batch,
                    note=f"skipped: {self.remaining():.0f} s left, ~{estimate_s:.0f} s needed",
                )
            )
            return 0.0
        static = mode == STATIC_MODE
        started = time.perf_counter()
        inputs = self.prompts(batch)
        self.reset_peak()
        warm = self.timed(lambda: self.generate(inputs, self.args.new_tokens, static), 1)
        first_token = self.timed(lambda: self.generate(inputs, 1, static), self.args.repeats)
        full = self.timed(
            lambda: self.generate(inputs, self.args.new_tokens, static), self.args.repeats
        )
        decode_s = full - first_token
        note = f"first call {warm:.1f} s"
        if static:
            note += " (compile)" if self.device.type == "cuda" else " (no compile on CPU)"
        if decode_s <= 0:
            note += "; decode time lost in timing noise"
        self.rows.append(
            Row(
                mode,
                batch,
                prefill_tps=batch * self.args.prompt / first_token,
                decode_tps=batch * (self.args.new_tokens - 1) / decode_s if decode_s > 0 else None,
                peak_gib=self.peak_gib(),
                note=note,
            )
        )
        elapsed = time.perf_counter() - started
        print(f"  {mode}, batch {batch}: {elapsed:.1f} s", file=sys.stderr, flush=True)
        return elapsed

    def vision_cell(self, images: int, estimate_s: float) -> None:
        """Time the vision tower + projector on ``images`` random images."""
        vision: Any = self.model.config.vision_config
        size = vision.image_size
        mode = f"vision encoder ({size}x{size})"
        if self.remaining() < estimate_s:
            self.rows.append(Row(mode, images, note=f"skipped: {self.remaining():.0f} s left"))
            return
        pixels = torch.randn(images, 3, size, size, generator=self.generator)
        pixels = pixels.to(self.device, dtype=self.model.dtype)
        self.reset_peak()

        def encode() -> None:
            with torch.inference_mode():
                self.model.get_image_features(pixel_values=pixels)

        self.timed(encode, 1)
        seconds = self.timed(encode, max(3, self.args.repeats))
        self.rows.append(
            Row(mode, images, peak_gib=self.peak_gib(), ms_per_image=seconds * 1000 / images)
        )

    def run(self) -> None:
        """All cells, cheapest first; a stop signal or the budget ends them early."""
        last = {
            DEFAULT_MODE: self.args.estimate_default_s,
            STATIC_MODE: self.args.estimate_static_s,
        }
        try:
            for batch in self.args.batches:
                took = self.text_cell(DEFAULT_MODE, batch, last[DEFAULT_MODE])
                last[DEFAULT_MODE] = max(last[DEFAULT_MODE], took * 1.5)
            for images in (1, 8):
                self.vision_cell(images, 10.0 if self.device.type == "cuda" else 1.0)
            for batch in self.args.batches:
                took = self.text_cell(STATIC_MODE, batch, last[STATIC_MODE])
                if took:
                    last[STATIC_MODE] = took * 1.2
        except OutOfTime:
            self.rows.append(Row("stopped", 0, note="interrupted; later cells not run"))
        except torch.cuda.OutOfMemoryError as error:
            self.rows.append(Row("stopped", 0, note=f"out of GPU memory: {str(error)[:80]}"))


def format_table(rows: list[Row]) -> str:
    """The rows as one fixed-width table (decode speed-up against the default cache)."""
    baseline = {r.batch: r.decode_tps for r in rows if r.mode == DEFAULT_MODE and r.decode_tps}

    def number(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = [
        f"{'run':30} {'batch':>5} {'prefill tok/s':>14} {'decode tok/s':>13} {'decode x':>9} "
        f"{'ms/image':>9} {'peak GiB':>9}  note"
    ]
    for row in rows:
        ratio = None
        if row.decode_tps and baseline.get(row.batch):
            ratio = row.decode_tps / baseline[row.batch]
        lines.append(
            f"{row.mode:30} {row.batch:5d} {number(row.prefill_tps):>14} "
            f"{number(row.decode_tps):>13} {number(ratio, 2):>9} {number(row.ms_per_image):>9} "
            f"{number(row.peak_gib, 2):>9}  {row.note}"
        )
    return "\n".join(lines)


def describe_device(device: torch.device) -> str:
    """The accelerator's name (or the CPU's)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--tiny", action="store_true", help="scaled-down config (CPU check)")
    parser.add_argument("--prompt", type=int, help="prompt tokens (default 512; tiny 32)")
    parser.add_argument("--new-tokens", type=int, help="generated tokens (default 128; tiny 8)")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per measurement")
    parser.add_argument("--budget-s", type=float, default=400.0, help="whole-run time budget")
    parser.add_argument("--estimate-default-s", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--estimate-static-s", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.device == "auto":
        if torch.cuda.is_available():
            args.device = "cuda"
        else:
            print("no CUDA GPU here: running the tiny CPU check (--device cpu --tiny)")
            args.device, args.tiny = "cpu", True
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU (is this torch a CUDA build?)")
    if args.device == "cpu" and not args.tiny:
        print("warning: the full 4.3B model on CPU needs ~17 GB and is very slow; try --tiny")
    args.prompt = args.prompt or (32 if args.tiny else 512)
    args.new_tokens = args.new_tokens or (8 if args.tiny else 128)
    if args.new_tokens < 2:
        parser.error("--new-tokens must be at least 2 (decode speed needs a second token)")
    gpu = args.device == "cuda"
    args.estimate_default_s = args.estimate_default_s or (30.0 if gpu else 1.0)
    args.estimate_static_s = args.estimate_static_s or (150.0 if gpu else 1.0)
    return args


def main(argv: list[str] | None = None) -> None:
    """Build the model, run the cells, print the table."""
    # The budget counts from this call, not from import: a test process imports the module long
    # before it runs it.
    started = time.perf_counter()
    args = parse_args(argv)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise OutOfTime(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    built = time.perf_counter()
    model = build_random_model(medgemma_4b_config(args.tiny), device, dtype)
    built_s = time.perf_counter() - built
    bench = Bench(model, args, started)
    bench.run()
    config = model.config
    text: Any = config.text_config
    vision: Any = config.vision_config
    print(
        f"{'tiny ' if args.tiny else ''}MedGemma 4B architecture (Gemma3ForConditionalGeneration, "
        f"random {str(dtype).removeprefix('torch.')} weights, {count_parameters(model) / 1e9:.3f}B "
        f"parameters: {text.num_hidden_layers} layers x {text.hidden_size}, vision "
        f"{vision.num_hidden_layers} layers, {vision.image_size} px), "
        f"built on the device in {built_s:.1f} s"
    )
    print(
        f"device {describe_device(device)}; torch {torch.__version__}, transformers "
        f"{transformers.__version__}; prompt {args.prompt} random tokens, {args.new_tokens} new "
        f"tokens, greedy; attention {config._attn_implementation}"
    )
    print(format_table(bench.rows))
    if args.tiny:
        print("tiny run: a check of the mechanics; its numbers say nothing about MedGemma's speed")
    print(f"total {time.perf_counter() - started:.0f} s (budget {args.budget_s:.0f} s)")
    if args.json:
        args.json.write_text(
            json.dumps({"rows": [asdict(r) for r in bench.rows], "tiny": args.tiny}, indent=1)
        )


if __name__ == "__main__":
    main()
