"""GGUF files are parsed once per load, with a reader that sees exactly what ``GGUFReader`` sees."""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from medgraph.agents.engines.gguf_reading import PlainArrayReader, shared_gguf_reader
from medgraph.agents.engines.transformers_engine import load_model
from medgraph.errors import ConfigurationError, ModelLoadError


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small GGUF file with the kinds of fields a model file has: scalars, strings, a
    vocabulary-like string array, number arrays, and float and integer tensors."""
    path = tmp_path_factory.mktemp("gguf") / "small.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_uint32("gemma3.block_count", 2)
    writer.add_float32("gemma3.rope.freq_base", 10000.0)
    writer.add_string("general.name", "small test file")
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    tokens = [f"tok{i}" for i in range(3000)] + ["<start_of_turn>", "ünï", ""]
    writer.add_array("tokenizer.ggml.tokens", tokens)
    writer.add_array("tokenizer.ggml.scores", [float(-i) for i in range(len(tokens))])
    writer.add_array("tokenizer.ggml.token_type", [1] * len(tokens))
    rng = np.random.default_rng(0)
    writer.add_tensor("token_embd.weight", rng.standard_normal((64, 16)).astype(np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", np.arange(16, dtype=np.float16))
    writer.add_tensor("counts", np.arange(10, dtype=np.int32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_plain_array_reader_reads_the_same_fields_and_tensors(gguf_path: Path) -> None:
    expected, fast = gguf.GGUFReader(str(gguf_path)), PlainArrayReader(str(gguf_path))
    assert list(fast.fields) == list(expected.fields)
    for name, field in expected.fields.items():
        other = fast.fields[name]
        assert (other.offset, other.types, other.data) == (field.offset, field.types, field.data)
        assert len(other.parts) == len(field.parts)
        for mine, theirs in zip(other.parts, field.parts, strict=True):
            assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs), name
    assert fast.fields["tokenizer.ggml.tokens"].contents()[-3:] == ["<start_of_turn>", "ünï", ""]
    assert [t.name for t in fast.tensors] == [t.name for t in expected.tensors]
    for mine, theirs in zip(fast.tensors, expected.tensors, strict=True):
        assert mine.tensor_type == theirs.tensor_type
        assert np.array_equal(mine.data, theirs.data) and mine.data.dtype == theirs.data.dtype


def test_inside_the_block_each_file_is_read_once_and_the_reader_is_put_back(
    gguf_path: Path, tmp_path: Path
) -> None:
    original = gguf.GGUFReader
    other = tmp_path / "copy.gguf"
    other.write_bytes(gguf_path.read_bytes())
    with shared_gguf_reader():
        first = gguf.GGUFReader(str(gguf_path))
        with shared_gguf_reader():  # a nested load shares the readers
            assert gguf.GGUFReader(str(gguf_path)) is first
        assert gguf.GGUFReader(str(gguf_path)) is first
        assert isinstance(first, PlainArrayReader)
        assert gguf.GGUFReader(str(other)) is not first
    assert gguf.GGUFReader is original
    with shared_gguf_reader():
        assert gguf.GGUFReader(str(gguf_path)) is not first  # forgotten once the block closed


def test_a_missing_file_or_package_is_named_before_anything_is_read(
    gguf_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "medgemma-4b-it-Q4_K_M.gguf"
    with pytest.raises(ModelLoadError, match=r"medgemma-4b-it-Q4_K_M\.gguf.*does not exist"):
        load_model(str(missing))
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if the gguf package were not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'medgraph\[gguf\]'"):
        load_model(str(gguf_path))
