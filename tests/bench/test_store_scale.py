"""bench/store_scale.py: its measurements of both stores, on a few hundred chunks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.support import load_bench


@pytest.mark.parametrize("store", ["chroma", "milvus"])
def test_import_and_serving_measurements_are_sane(tmp_path: Path, store: str) -> None:
    bench = load_bench("store_scale")
    table = tmp_path / "chunks.parquet"
    bench.write_table(400, table)
    built = bench.build(store, table, tmp_path / store)
    # every record became one chunk, which stores at least its 384 float32s
    assert built["chunks"] == 400 and built["add_per_s"] > 0
    assert built["bytes_per_chunk"] > 1536
    served = bench.serve(store, tmp_path / store)
    assert served["rss"] > 0 and 0 < served["p50"] <= served["p95"]
