"""Time and peak memory to prepare a CT series for MedGemma 4B, and the prompt it makes.

    python bench/series_prepare.py [--slices 300] [--size 512] [--max-slices 85]

Writes a synthetic CT phantom series (``tests/dicom_series.py``), then, each in a fresh process:

- ``imports``: Python with medgraph's series module imported, nothing read (the RSS floor);
- ``whole volume`` (baseline): every slice decoded into one float32 HU volume in memory, sorted
  by position, then the evenly sampled slices windowed, the way a script that loads the whole
  study with pydicom works;
- ``medgraph``: :func:`medgraph.agents.series.load_study` (headers of all files, pixels of the
  sampled slices only, one at a time).

It prints wall time and peak RSS of each, the ratios medgraph / whole volume, and the token count
of the series prompt for MedGemma 4B: each image is 256 soft tokens plus its start and end
markers; the text is counted in characters (MedGemma's own tokenizer is not available offline
here; Gemma's tokenizer averages about four characters per English token, so the text estimate is
characters / 4).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MEDGEMMA_4B_CONTEXT = 128_000
TOKENS_PER_IMAGE = 256
IMAGE_MARKERS = 2  # <start_of_image> and <end_of_image>

_CHILD = r"""
import json, resource, sys, time
mode, folder, max_slices = sys.argv[1], sys.argv[2], int(sys.argv[3])
from medgraph.agents.series import load_study, read_header, sample_indices, ct_windows_rgb
from medgraph.agents.study_input import study_files
started = time.perf_counter()
shown = 0
if mode == "medgraph":
    (study,) = load_study(folder, max_slices=max_slices)
    shown = len(study.series[0].images)
elif mode == "whole":
    import io
    import numpy as np
    import pydicom
    from pydicom.pixels import apply_modality_lut
    files = study_files(folder)
    datasets = [pydicom.dcmread(io.BytesIO(f.read())) for f in files]
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    volume = np.stack([apply_modality_lut(d.pixel_array, d).astype(np.float32) for d in datasets])
    picked = sample_indices(len(volume), max_slices)
    images = [ct_windows_rgb(volume[i]) for i in picked]
    shown = len(images)
seconds = time.perf_counter() - started
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak_mib, "shown": shown}))
"""


def _run(mode: str, folder: Path, max_slices: int) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(folder), str(max_slices)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _prompt_tokens(folder: Path, max_slices: int) -> tuple[int, int, int]:
    """(images, image tokens, text characters) of the series prompt."""
    from medgraph.agents.series import load_study
    from medgraph.graphs.image_reading import series_message

    (study,) = load_study(folder, max_slices=max_slices)
    message = series_message(study.series[0], "What does this CT show?")
    blocks = message.content
    images = sum(1 for b in blocks if isinstance(b, dict) and b.get("type") == "image")
    text = sum(
        len(str(b.get("text", "")))
        for b in blocks
        if isinstance(b, dict) and b.get("type") == "text"
    )
    return images, images * (TOKENS_PER_IMAGE + IMAGE_MARKERS), text


def main() -> None:
    """Write the series, measure each way in a fresh process, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--max-slices", type=int, default=85)
    args = parser.parse_args()
    from tests.dicom_series import write_series

    with tempfile.TemporaryDirectory(prefix="medgraph-series-bench-") as tmp:
        folder = Path(tmp) / "ct"
        started = time.perf_counter()
        write_series(folder, slices=args.slices, rows=args.size, columns=args.size, spacing=1.0)
        size_mib = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
        print(
            f"series: {args.slices} slices of {args.size}x{args.size}, {size_mib:.0f} MiB on disk "
            f"(written in {time.perf_counter() - started:.1f} s); sampled to {args.max_slices}"
        )
        floor = _run("imports", folder, args.max_slices)
        whole = _run("whole", folder, args.max_slices)
        ours = _run("medgraph", folder, args.max_slices)
        print(f"{'way':<34}{'seconds':>9}{'peak RSS MiB':>14}{'slices':>8}")
        print(f"{'imports only (RSS floor)':<34}{'-':>9}{floor['peak_mib']:>14.0f}{'-':>8}")
        for label, row in (
            ("whole volume in memory (baseline)", whole),
            ("medgraph load_study", ours),
        ):
            print(f"{label:<34}{row['seconds']:>9.2f}{row['peak_mib']:>14.0f}{row['shown']:>8.0f}")
        above = (ours["peak_mib"] - floor["peak_mib"]) / max(
            1.0, whole["peak_mib"] - floor["peak_mib"]
        )
        print(
            f"ratio medgraph / whole volume: time {ours['seconds'] / whole['seconds']:.2f}x, "
            f"peak RSS {ours['peak_mib'] / whole['peak_mib']:.2f}x "
            f"({above:.2f}x of the memory above the imports floor)"
        )
        images, image_tokens, text_chars = _prompt_tokens(folder, args.max_slices)
        text_tokens = text_chars // 4
        total = image_tokens + text_tokens
        print(
            f"prompt for MedGemma 4B: {images} images x ({TOKENS_PER_IMAGE} + {IMAGE_MARKERS}) = "
            f"{image_tokens} image tokens + ~{text_tokens} text tokens ({text_chars} characters "
            f"/ 4) = ~{total} tokens, {total / MEDGEMMA_4B_CONTEXT:.0%} of its "
            f"{MEDGEMMA_4B_CONTEXT:,}-token context; at most "
            f"{MEDGEMMA_4B_CONTEXT // (TOKENS_PER_IMAGE + IMAGE_MARKERS + 4)} such slices would fit"
        )


if __name__ == "__main__":
    main()
