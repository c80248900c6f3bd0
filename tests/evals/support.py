"""Helpers of the evaluation tests: small real question files, a small real index, a tiny NLI model,
and the CLI run in-process."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from medgraph.cli import main
from tests.support import require_shared_file, shared_data_dir

DEV_QUESTIONS = 8
"""The first dev questions used by these tests; the small index holds their gold abstracts."""


def dev_lines(limit: int = DEV_QUESTIONS) -> list[str]:
    """The first ``limit`` lines of the shared PubMedQA dev file, unchanged."""
    lines = (shared_data_dir() / "pubmedqa" / "dev.jsonl").read_text(encoding="utf-8").split("\n")
    return [line for line in lines if line.strip()][:limit]


def medqa_lines(limit: int) -> list[str]:
    """The first ``limit`` lines of the shared MedQA sample, unchanged."""
    lines = require_shared_file("medqa/sample.jsonl").read_text(encoding="utf-8").split("\n")
    return [line for line in lines if line.strip()][:limit]


def write_lines(path: Path, lines: Sequence[str]) -> Path:
    """Write ``lines`` as a JSON-lines file and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def gold_corpus_lines(pmids: set[str]) -> list[str]:
    """Corpus records (raw lines) of the given pmids."""
    path = shared_data_dir() / "pubmedqa" / "corpus.jsonl"
    return [
        line
        for line in path.read_text(encoding="utf-8").split("\n")
        if line.strip() and json.loads(line)["pmid"] in pmids
    ]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON-lines file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``medgraph ARGS`` in this process; returns (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), captured.out, captured.err


def one_error_line(err: str) -> str:
    """The single ``medgraph: error:`` line of standard error (progress output aside)."""
    lines = [line for line in err.splitlines() if line.startswith("medgraph: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def build_nli_model(folder: Path, id2label: dict[int, str], bias: Sequence[float]) -> Path:
    """A random-weight one-layer BERT NLI cross-encoder (MiniLM tokenizer), saved to ``folder``.

    The classifier's weights are zero and its bias is ``bias``, so every pair gets the same
    label: the argmax of ``bias``. That makes the judge's verdicts known in advance.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from medgraph.knowledge.config import KnowledgeSettings
    from medgraph.knowledge.embeddings import resolve_model_source

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model_source(KnowledgeSettings().embedding_model)
    )
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=512,
    )
    config.num_labels = len(id2label)
    config.id2label = dict(id2label)
    config.label2id = {label: index for index, label in id2label.items()}
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(list(bias)))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
