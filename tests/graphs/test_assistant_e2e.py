"""The assistant end to end on the real PubMedQA index: extractive and tiny MedGemma checkpoints."""

from __future__ import annotations

from pathlib import Path

from medgraph.agents.extractive import EXTRACTIVE_LABEL
from medgraph.assistant import Assistant
from medgraph.settings import Settings
from tests.graphs.support import dev_questions


def _settings(tmp_path: Path, index_dir: Path, **models: str) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.knowledge = settings.knowledge.model_copy(update={"index_dir": index_dir})
    settings.models = settings.models.model_copy(update=models)
    return settings


def _corpus_records() -> list[dict[str, object]]:
    from tests.knowledge.index_support import corpus_records

    return corpus_records()


def test_extractive_answers_cite_ingested_records(tmp_path: Path, pubmedqa_corpus) -> None:  # type: ignore[no-untyped-def]
    ingested = {str(r["pmid"]) for r in _corpus_records()}
    settings = _settings(tmp_path, pubmedqa_corpus.index_dir, engine="extractive")
    with Assistant(settings) as assistant:
        gold_cited = 0
        questions = dev_questions(10)
        for item in questions:
            answer = assistant.ask(item["question"])
            assert answer.engine == "extractive"
            assert answer.text.startswith(EXTRACTIVE_LABEL)
            assert answer.route == ["triage", "retrieve", "write", "verify", "finalize"]
            assert answer.citations, item["question"]
            assert {c.source_id for c in answer.citations} <= ingested
            # one reference per record, numbered 1..n, each with its cited passages
            assert [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))
            assert len({c.source_id for c in answer.citations}) == len(answer.citations)
            for citation in answer.citations:
                assert citation.quote and citation.reference.startswith(f"[{citation.n}]")
                assert citation.passages and citation.passages[0].quote == citation.quote
                assert all(p.quote for p in citation.passages)
            assert answer.verification.supported_fraction == 1.0
            gold_cited += str(item["pmid"]) in {c.source_id for c in answer.citations}
    assert gold_cited >= len(questions) // 2


def test_tiny_checkpoints_fill_both_roles_with_an_image(
    tmp_path: Path,
    pubmedqa_corpus,
    tiny_multimodal: str,
    tiny_text: str,
    data_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    ingested = {str(r["pmid"]) for r in _corpus_records()}
    settings = _settings(
        tmp_path,
        pubmedqa_corpus.index_dir,
        engine="transformers",
        image_model=tiny_multimodal,
        text_model=tiny_text,
    )
    settings.models = settings.models.model_copy(update={"max_new_tokens": 96})
    settings.graph = settings.graph.model_copy(update={"max_tool_steps": 2})
    image = data_dir / "images" / "nih-cxr14" / "00000001_000.png"
    with Assistant(settings) as assistant:
        answer = assistant.ask("Is there cardiomegaly on this chest radiograph?", images=[image])
    assert {"read_images", "retrieve", "write", "verify"} <= set(answer.route)
    assert answer.findings and answer.findings[0].model == tiny_multimodal
    assert {c.source_id for c in answer.citations} <= ingested
    cited = {c.n for c in answer.citations}
    for sentence in answer.verification.sentences:
        if sentence.supported:
            assert set(sentence.citations) <= cited
    assert answer.engine == f"transformers:{tiny_text}"
