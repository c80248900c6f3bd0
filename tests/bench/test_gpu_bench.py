"""bench/gpu_bench.py: the exact MedGemma 4B config, and the table's mechanics on CPU (--tiny)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from transformers import Gemma3ForConditionalGeneration

from tests.bench.support import load_bench
from tests.support import REPO_ROOT

gpu_bench = load_bench("gpu_bench")


def vm_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def expected_parameters(text: dict, vision: dict) -> int:  # type: ignore[type-arg]
    """Gemma 3 multimodal parameter count from the config values alone (tied LM head)."""
    hidden, inter, heads = (
        text["hidden_size"],
        text["intermediate_size"],
        text["num_attention_heads"],
    )
    kv, head_dim = text["num_key_value_heads"], text["head_dim"]
    layer = (
        hidden * heads * head_dim * 2  # q and o projections
        + hidden * kv * head_dim * 2  # k and v projections
        + 2 * head_dim  # q/k norms
        + 4 * hidden  # input, post-attention, pre/post-feedforward norms
        + 3 * hidden * inter  # gated MLP
    )
    language = text["vocab_size"] * hidden + text["num_hidden_layers"] * layer + hidden
    width, inner = vision["hidden_size"], vision["intermediate_size"]
    patch, size = vision["patch_size"], vision["image_size"]
    encoder_layer = 4 * (width * width + width) + 4 * width + 2 * width * inner + inner + width
    tower = (
        3 * patch * patch * width
        + width  # patch embedding
        + (size // patch) ** 2 * width  # position embedding
        + vision["num_hidden_layers"] * encoder_layer
        + 2 * width  # post layer norm
    )
    projector = width * hidden + width
    return language + tower + projector


def test_medgemma_4b_config_builds_on_meta_with_the_published_size() -> None:
    config = gpu_bench.medgemma_4b_config()
    assert config.text_config.layer_types.count("full_attention") == 5  # 5:1 local/global
    assert config.text_config.rope_parameters["full_attention"]["factor"] == 8.0
    assert config.vision_config.image_size // config.vision_config.patch_size == 64
    before = vm_rss_kib()
    with torch.device("meta"):
        model = Gemma3ForConditionalGeneration(config)
    grown_mib = (vm_rss_kib() - before) / 1024
    assert all(p.is_meta for p in model.parameters())
    assert grown_mib < 1024, f"building on meta allocated {grown_mib:.0f} MiB"
    count = gpu_bench.count_parameters(model)
    assert count == expected_parameters(gpu_bench.MEDGEMMA_4B_TEXT, gpu_bench.MEDGEMMA_4B_VISION)
    # Published as 4.3B: equal at the precision it is stated.
    assert round(count / 1e9, 1) == gpu_bench.MEDGEMMA_4B_PARAMETERS / 1e9


def test_tiny_cpu_run_prints_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rows.json"
    gpu_bench.main(
        [
            *("--device", "cpu", "--tiny", "--prompt", "24", "--new-tokens", "3"),
            *("--repeats", "1", "--json", str(out)),
        ]
    )
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    cells = {(r["mode"], r["batch"]) for r in rows}
    for mode in (gpu_bench.DEFAULT_MODE, gpu_bench.STATIC_MODE):
        for batch in (1, 8, 32):
            assert (mode, batch) in cells
    vision = [r for r in rows if r["mode"].startswith("vision encoder (224x224)")]
    assert sorted(r["batch"] for r in vision) == [1, 8]
    assert all(r["ms_per_image"] > 0 for r in vision)
    for row in rows:
        if row["mode"] in (gpu_bench.DEFAULT_MODE, gpu_bench.STATIC_MODE):
            assert row["prefill_tps"] > 0 and not row["note"].startswith("skipped")
    table = [
        line for line in printed.splitlines() if line.startswith(("default", "static", "vision"))
    ]
    assert len(table) == len(rows) == 8
    assert "tiny MedGemma 4B architecture" in printed and "no compile on CPU" in printed


def test_budget_guard_skips_cells_instead_of_overrunning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A budget already spent: every cell is skipped with a note, nothing runs.
    gpu_bench.main(["--device", "cpu", "--tiny", "--budget-s", "0", "--new-tokens", "2"])
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.startswith(("default", "static"))]
    assert len(lines) == 6 and all("skipped" in line for line in lines)


def test_gpu_script_without_nvidia_driver_says_so(tmp_path: Path) -> None:
    # Only the tools the script needs before its GPU check: no nvidia-smi on this PATH.
    (tmp_path / "dirname").symlink_to(shutil.which("dirname") or "/usr/bin/dirname")
    result = subprocess.run(
        ["/bin/bash", str(REPO_ROOT / "bench" / "gpu.sh")],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "nvidia-smi not found" in result.stderr
    assert "--device cpu --tiny" in result.stderr
