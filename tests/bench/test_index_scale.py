"""bench/index_scale.py: its size and memory measurements, on a few hundred chunks."""

from __future__ import annotations

from pathlib import Path

from tests.bench.support import load_bench


def test_lexical_and_chroma_measurements_are_sane(tmp_path: Path) -> None:
    bench = load_bench("index_scale")
    lexical = bench.lexical(600, tmp_path / "bm25")
    # postings of a two-sentence chunk take tens to hundreds of bytes; a load adds RSS
    assert 50 < lexical["bytes_per_chunk"] < 2000
    assert lexical["rss_per_chunk"] > 0 and lexical["ms_per_query"] > 0
    assert lexical["add10_s"] > 0 and lexical["build_s"] > 0
    chroma = bench.chroma(600, tmp_path / "chroma")
    # every chunk stores at least its 384 float32s and its text
    assert chroma["bytes_per_chunk"] > 1536 + chroma["text_bytes_per_chunk"]
    assert chroma["add_chunks_per_s"] > 0
    # each vector is in the HNSW's level-0 file or, until Chroma flushes it, in the log;
    # Chroma keeps the text with the metadata
    in_log = chroma["tables"].get("log (vector copy)", 0.0)
    assert chroma["hnsw_level0_bytes_per_chunk"] + in_log >= 1536
    assert chroma["tables"]["metadata and text"] > chroma["text_bytes_per_chunk"]
    assert chroma["rss_per_chunk"] > 0 and chroma["ms_per_query"] > 0
