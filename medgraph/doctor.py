"""What this machine can run: Python, torch, accelerator memory, and each model role's weights."""

from __future__ import annotations

import json
import math
import mmap
import platform
import struct
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medgraph.agents.config import ModelSettings

# Parameter counts of the published checkpoints (model cards), for memory estimates without weights.
KNOWN_PARAMETERS = {
    "google/medgemma-4b-it": 4.3e9,
    "google/medgemma-4b-pt": 4.3e9,
    "google/medgemma-27b-text-it": 27.0e9,
    "google/medgemma-27b-it": 27.4e9,
}
BYTES_PER_PARAMETER = {"bfloat16": 2.0, "float16": 2.0, "float32": 4.0, "4bit": 0.55, "8bit": 1.05}
OVERHEAD = 1.15  # activations, KV cache for a short context, CUDA context
_STORED_BYTES = {"bfloat16": 2.0, "float16": 2.0, "float32": 4.0}


@dataclass
class Accelerator:
    """One CUDA device."""

    name: str
    memory_gb: float


@dataclass
class RoleReport:
    """Whether one model role (image or text) can run here."""

    role: str
    model: str
    engine: str
    weights: str
    """"local folder", "in Hugging Face cache", "not downloaded", "server", or "not needed"."""
    parameters: float | None = None
    needs_gb: float | None = None
    available_gb: float | None = None
    fits: bool | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class DoctorReport:
    """Everything ``medgraph doctor`` prints."""

    python: str
    platform: str
    torch: str | None
    cuda: bool
    accelerators: list[Accelerator]
    memory_gb: float | None
    roles: list[RoleReport]

    def to_json(self) -> str:
        """The report as one JSON object."""
        return json.dumps(asdict(self), indent=2)


def _system_memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 1e9, 1)
    except ImportError:
        return None


def _accelerators() -> tuple[str | None, bool, list[Accelerator]]:
    try:
        import torch
    except ImportError:
        return None, False, []
    devices: list[Accelerator] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(Accelerator(props.name, round(props.total_memory / 1e9, 1)))
    return torch.__version__, torch.cuda.is_available(), devices


def locate_weights(model: str) -> tuple[str, Path | None]:
    """Where ``model``'s weights are: a local folder, the Hub cache, or nowhere yet."""
    folder = Path(model).expanduser()
    if folder.suffix.lower() == ".gguf":
        return ("GGUF file" if folder.is_file() else "GGUF file missing"), (
            folder if folder.is_file() else None
        )
    if folder.is_dir():
        return (
            "local folder" if (folder / "config.json").is_file() else "folder without config.json"
        ), folder
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except Exception:  # malformed repo ids raise various validation errors
        cached = None
    if isinstance(cached, str):
        return "in Hugging Face cache", Path(cached).parent
    return "not downloaded", None


# GGUF metadata value types with a fixed size in bytes (8 is a string, 9 an array).
_GGUF_FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_parameters(path: Path) -> int:
    """Parameters stored in the GGUF file at ``path``, from its tensor headers alone.

    Only the header is read: the metadata (a 262k-token vocabulary for Gemma) is skipped, not
    parsed, so this takes milliseconds where the ``gguf`` package's reader takes minutes on a
    busy 2-core machine. Raises ``ValueError`` for a file that is not little-endian GGUF v2/v3.
    """
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
        version, tensors, entries = struct.unpack_from("<IQQ", data, 4)
        if version not in (2, 3):
            raise ValueError(f"{path} is GGUF version {version}; medgraph reads versions 2 and 3")
        offset = 24

        def skip_string(at: int) -> int:
            return at + 8 + struct.unpack_from("<Q", data, at)[0]

        def skip_value(kind: int, at: int) -> int:
            if kind in _GGUF_FIXED_SIZES:
                return at + _GGUF_FIXED_SIZES[kind]
            if kind == 8:
                return skip_string(at)
            if kind == 9:
                item, count = struct.unpack_from("<IQ", data, at)
                at += 12
                if item in _GGUF_FIXED_SIZES:
                    return at + count * _GGUF_FIXED_SIZES[item]
                for _ in range(count):
                    at = skip_value(item, at)
                return at
            raise ValueError(f"{path} has a metadata value of unknown type {kind}")

        for _ in range(entries):
            offset = skip_string(offset)
            (kind,) = struct.unpack_from("<I", data, offset)
            offset = skip_value(kind, offset + 4)
        total = 0
        for _ in range(tensors):
            offset = skip_string(offset)
            (dimensions,) = struct.unpack_from("<I", data, offset)
            shape = struct.unpack_from(f"<{dimensions}Q", data, offset + 4)
            offset += 4 + 8 * dimensions + 4 + 8  # shape, then the tensor's type and data offset
            total += math.prod(shape)
        return total


def _gguf_parameters(path: Path) -> float | None:
    try:
        return float(gguf_parameters(path))
    except (OSError, ValueError, struct.error):  # unreadable: no estimate rather than a crash
        return None


def count_parameters(model: str, folder: Path | None) -> float | None:
    """Parameters of a checkpoint: from its safetensors size if local, else the model card."""
    if folder is not None and folder.suffix.lower() == ".gguf":
        return _gguf_parameters(folder)
    if folder is not None:
        files = list(folder.glob("*.safetensors"))
        if files:
            stored = 2.0
            config = folder / "config.json"
            if config.is_file():
                data: dict[str, Any] = json.loads(config.read_text())
                dtype = data.get("dtype") or data.get("torch_dtype") or "bfloat16"
                stored = _STORED_BYTES.get(str(dtype), 2.0)
            return sum(f.stat().st_size for f in files) / stored
    return KNOWN_PARAMETERS.get(model)


def check_role(
    role: str, model: str, settings: ModelSettings, cuda: bool, available_gb: float | None
) -> RoleReport:
    """Whether ``model`` can serve ``role`` on this machine."""
    if settings.engine == "extractive":
        return RoleReport(
            role, model, "extractive", "not needed", notes=["no LLM: extractive answers"]
        )
    if settings.engine == "openai":
        notes = (
            [] if settings.base_url else ["set MEDGRAPH_MODELS__BASE_URL to the server's /v1 URL"]
        )
        return RoleReport(role, model, "openai", "server", notes=notes)
    where, folder = locate_weights(model)
    report = RoleReport(role, model, "transformers", where)
    if where == "not downloaded":
        report.notes.append(
            "accept the Health AI Developer Foundations terms on its Hugging Face page and log in "
            "(`hf auth login`), or set the role to a local folder"
        )
    parameters = count_parameters(model, folder)
    if parameters is not None:
        precision = settings.quantization if settings.quantization != "none" else settings.dtype
        if precision == "auto":
            precision = "bfloat16" if cuda else "float32"
        report.parameters = parameters
        report.needs_gb = round(parameters * BYTES_PER_PARAMETER[precision] * OVERHEAD / 1e9, 1)
        report.available_gb = available_gb
        if folder is not None and folder.suffix.lower() == ".gguf":
            report.notes.append(
                f"GGUF weights are dequantised to {precision} on load: the model needs "
                f"{report.needs_gb} GB, not the file's {folder.stat().st_size / 1e9:.1f} GB, and "
                "loading peaks at about 3x that while tensors are converted "
                "(pip install 'medgraph[gguf]')"
            )
        if available_gb is not None:
            report.fits = report.needs_gb <= available_gb
            if not report.fits and settings.quantization == "none" and cuda:
                report.notes.append(
                    "try MEDGRAPH_MODELS__QUANTIZATION=4bit (pip install 'medgraph[quant]')"
                )
    return report


def run_doctor(settings: ModelSettings) -> DoctorReport:
    """Inspect this machine and the configured model roles."""
    torch_version, cuda, devices = _accelerators()
    memory = _system_memory_gb()
    available = max((d.memory_gb for d in devices), default=None) if cuda else memory
    roles = [
        check_role("image", settings.image_model, settings, cuda, available),
        check_role("text", settings.text_model, settings, cuda, available),
    ]
    return DoctorReport(
        python=sys.version.split()[0],
        platform=platform.platform(),
        torch=torch_version,
        cuda=cuda,
        accelerators=devices,
        memory_gb=memory,
        roles=roles,
    )
