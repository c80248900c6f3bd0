"""bench/model_sharing.py: the scaled checkpoint builds, and the two configurations differ as
they should (one shared engine copy versus two), each measured in a fresh process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from transformers import AutoConfig

from tests.bench.support import load_bench

sharing = load_bench("model_sharing")


def test_checkpoint_size_follows_the_options(tmp_path: Path) -> None:
    small = sharing.build_checkpoint(tmp_path / "small", hidden_size=64, layers=1, vision_layers=1)
    large = sharing.build_checkpoint(tmp_path / "large", hidden_size=128, layers=2, vision_layers=1)
    config = AutoConfig.from_pretrained(tmp_path / "large")
    assert config.text_config.hidden_size == 128 and config.text_config.num_hidden_layers == 2
    assert type(config).__name__ == "Gemma3Config" and config.vision_config is not None
    assert large > small > 0


def test_shared_roles_hold_one_copy_and_separate_roles_two(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Each configuration runs in a fresh process; "one copy" is whether the image and text roles'
    # engines hold the very same loaded model object there.
    sharing.main(["--hidden-size", "64", "--layers", "1", "--vision-layers", "1", "--repeats", "1"])
    printed = capsys.readouterr().out
    number = r"\s+(\d+\.\d+)"
    baseline = re.search(
        r"^two copies of the checkpoint \(baseline\)" + number + r"\s+1\.00\s.*\sFalse$",
        printed,
        re.M,
    )
    shared = re.search(
        r"^same checkpoint, shared" + number + number + r"\s.*\sTrue$", printed, re.M
    )
    assert baseline and shared, printed
    assert float(baseline.group(1)) > 0 and float(shared.group(1)) > 0
