"""medgraph doctor: weights location, memory estimates, CLI output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medgraph.agents.config import ModelSettings
from medgraph.doctor import check_role, run_doctor


def test_local_checkpoint_is_found_and_sized(tiny_multimodal: str) -> None:
    role = check_role("image", tiny_multimodal, ModelSettings(), cuda=False, available_gb=1.0)
    assert role.weights == "local folder"
    assert role.parameters is not None and 5e4 < role.parameters < 1e6
    assert role.fits is True


def test_missing_weights_explain_how_to_get_them() -> None:
    role = check_role("text", "google/medgemma-27b-text-it", ModelSettings(), False, 24.0)
    assert role.weights == "not downloaded"
    assert any("Health AI Developer Foundations" in n for n in role.notes)
    # 27e9 parameters in fp32 on CPU cannot fit in 24 GB
    assert role.needs_gb is not None and role.needs_gb > 100 and role.fits is False


def test_bf16_and_4bit_estimates_follow_the_model_card_sizes() -> None:
    gpu = ModelSettings(dtype="bfloat16")
    four_b = check_role("image", "google/medgemma-4b-it", gpu, cuda=True, available_gb=80.0)
    assert four_b.needs_gb is not None and 8 <= four_b.needs_gb <= 11
    quant = ModelSettings(quantization="4bit")
    big = check_role("text", "google/medgemma-27b-text-it", quant, cuda=True, available_gb=24.0)
    assert big.needs_gb is not None and big.needs_gb < 24 and big.fits


def test_extractive_needs_no_weights() -> None:
    report = run_doctor(ModelSettings(engine="extractive"))
    assert {r.weights for r in report.roles} == {"not needed"}
    assert report.python.startswith("3.")


def test_cli_json(tiny_multimodal: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "medgraph", "doctor", "--model", tiny_multimodal, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["torch"] and data["cuda"] is False
    assert [r["weights"] for r in data["roles"]] == ["local folder", "local folder"]


def test_gguf_parameters_come_from_the_tensor_headers_past_any_metadata(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    import numpy as np

    from medgraph.doctor import gguf_parameters

    path = tmp_path / "small.gguf"
    writer = gguf.GGUFWriter(str(path), arch="gemma3")
    writer.add_token_list([f"tok{i}" for i in range(300)])  # a string array to skip
    writer.add_token_scores([0.5] * 300)  # a fixed-size array
    writer.add_name("tiny")
    writer.add_tensor("token_embd.weight", np.zeros((300, 8), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((8, 8, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert gguf_parameters(path) == 300 * 8 + 8 * 8 * 2
    assert gguf_parameters(path) == sum(int(t.n_elements) for t in gguf.GGUFReader(path).tensors)
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf file")
    with pytest.raises(ValueError, match="not a GGUF file"):
        gguf_parameters(not_gguf)
