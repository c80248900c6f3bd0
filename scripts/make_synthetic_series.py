"""Write the synthetic DICOM test studies into a folder.

    python scripts/make_synthetic_series.py OUT [--slices 120]

OUT/ct-chest        CT phantom (air, soft tissue, bone in HU), shuffled files, slice 30 missing
OUT/ct-phi          the same with patient name, id, birth date, institution, accession planted
OUT/mr-head         MR phantom (percentile windowing)
OUT/cxr-pair        two dated CR chest studies of one patient (prior and current), from the
                    shared NIH ChestX-ray14 PNGs ($MEDGRAPH_DATA or ../shared/data)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.dicom_series import PlantedPHI, write_cxr_pair, write_series


def main() -> None:
    """Parse arguments and write the studies."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--slices", type=int, default=120, help="slices per series (40-120)")
    args = parser.parse_args()
    out: Path = args.out
    write_series(out / "ct-chest", slices=args.slices, missing=[30])
    write_series(out / "ct-phi", slices=args.slices, phi=PlantedPHI(), seed=1)
    mr_slices = max(40, args.slices // 2)
    write_series(out / "mr-head", slices=mr_slices, modality="MR", body_part="HEAD")
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data"
    data = Path(os.environ.get("MEDGRAPH_DATA", default_data))
    pngs = sorted((data / "images" / "nih-cxr14").glob("*.png"))
    if len(pngs) >= 2:
        write_cxr_pair(out / "cxr-pair", pngs[:2])
    else:
        print(f"no NIH ChestX-ray14 PNGs under {data}; the CXR pair was not written")
    print(f"wrote synthetic studies under {out}")


if __name__ == "__main__":
    main()
