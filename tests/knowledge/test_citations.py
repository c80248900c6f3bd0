"""Inline citation markers, rendering, and resolving numbers to evidence with exact quotes."""

from __future__ import annotations

import os
import random

import pytest

from medgraph.knowledge.chunking import split_sentences
from medgraph.knowledge.citations import (
    UNSUPPORTED_FLAG,
    DraftSentence,
    content_terms,
    drop_unknown_citations,
    numbers_in,
    parse_cited_text,
    record_numbering,
    remap_numbers,
    render_answer,
    renumber_sentences,
    resolve_citations,
    resolve_record_citations,
    stem,
    supporting_span,
)
from medgraph.knowledge.types import Chunk, Document, Evidence
from tests.knowledge.grounding_support import evidence_for

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def hand_evidence(number: int, text: str, source_id: str = "doc") -> Evidence:
    prefix = "Intro words. "
    document = Document(source_id=source_id, pmid="123", title="A title", authors=("Li",))
    chunk = Chunk(
        chunk_id=f"c{number}",
        source_id=source_id,
        index=0,
        text=text,
        start=len(prefix),
        end=len(prefix) + len(text),
    )
    return Evidence(chunk=chunk, document=document, score=0.5, number=number)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Metformin lowers glucose [1][3]. It is cheap [2].",
            [("Metformin lowers glucose.", [1, 3]), ("It is cheap.", [2])],
        ),
        ("Metformin lowers glucose [1, 3].", [("Metformin lowers glucose.", [1, 3])]),
        ("Metformin lowers glucose [1-3].", [("Metformin lowers glucose.", [1, 2, 3])]),
        ("Metformin lowers glucose [2–4, 7].", [("Metformin lowers glucose.", [2, 3, 4, 7])]),
        (
            "Metformin lowers glucose.[1] It is cheap. [2][2]",
            [("Metformin lowers glucose.", [1]), ("It is cheap.", [2])],
        ),
        (
            "Metformin [1] and insulin [2] lower glucose.",
            [("Metformin and insulin lower glucose.", [1, 2])],
        ),
        (
            "No markers at all. Still two sentences.",
            [("No markers at all.", []), ("Still two sentences.", [])],
        ),
        # a bracketed year is text, not a citation
        ("Guidelines changed in 2010 [2010] [4].", [("Guidelines changed in 2010 [2010].", [4])]),
        ("", []),
    ],
)
def test_parse_cited_text(text: str, expected: list[tuple[str, list[int]]]) -> None:
    parsed = parse_cited_text(text)
    assert [(s.text, s.citations) for s in parsed] == expected


def test_render_places_markers_before_final_punctuation() -> None:
    sentences = [
        DraftSentence(text="Sentence one.", citations=[1]),
        DraftSentence(text="Sentence two?", citations=[2, 3]),
        DraftSentence(text="No citation here.", citations=[]),
        DraftSentence(text="No final punctuation", citations=[4]),
        DraftSentence(text='He said "stop."', citations=[5]),
    ]
    rendered = render_answer(sentences)
    assert rendered == (
        "Sentence one [1]. Sentence two [2][3]? No citation here. No final punctuation [4] "
        'He said "stop [5]."'
    )


def test_parse_reads_back_what_render_wrote_on_real_sentences(
    corpus: dict[str, Document],
) -> None:
    rng = random.Random(7)
    documents = list(corpus.values())[:40]
    checked = 0
    for document in documents:
        _, start, end = document.sections[-1]
        sentences = [
            document.text[s:e]
            for s, e in split_sentences(document.text, start, end)
            if "[" not in document.text[s:e] and document.text[e - 1] in ".!?"
        ]
        drafts = [
            DraftSentence(text=text, citations=rng.sample(range(1, 9), rng.randint(0, 3)))
            for text in sentences
        ]
        assert parse_cited_text(render_answer(drafts)) == drafts
        checked += len(drafts)
    assert checked > 60


def test_marked_sentences_round_trip() -> None:
    drafts = [
        DraftSentence(text=f"Metformin cures cancer. {UNSUPPORTED_FLAG}", citations=[1]),
        DraftSentence(text="Insulin lowers glucose.", citations=[2]),
    ]
    rendered = render_answer(drafts)
    assert rendered == "Metformin cures cancer [1]. [unsupported] Insulin lowers glucose [2]."
    assert parse_cited_text(rendered) == drafts


def test_drop_unknown_citations() -> None:
    evidence = [hand_evidence(1, "Alpha beta gamma."), hand_evidence(3, "Delta epsilon zeta.")]
    sentences = [
        DraftSentence(text="One.", citations=[1, 2, 3, 1]),
        DraftSentence(text="Two.", citations=[9]),
    ]
    cleaned = drop_unknown_citations(sentences, evidence)
    assert [s.citations for s in cleaned] == [[1, 3], []]
    assert sentences[0].citations == [1, 2, 3, 1]  # inputs untouched


def test_resolve_citations_quotes_exact_spans_of_real_documents(
    corpus: dict[str, Document],
) -> None:
    documents = list(corpus.values())[100:106]
    evidence = evidence_for(documents)
    rng = random.Random(11)
    picked = rng.sample(evidence, 8)
    sentences: list[DraftSentence] = []
    for item in picked:
        spans = split_sentences(item.chunk.text)
        start, end = spans[rng.randrange(len(spans))]
        sentences.append(
            DraftSentence(text=item.chunk.text[start:end], citations=[item.number or 0])
        )
    # a number that no evidence carries is not rendered
    sentences.append(DraftSentence(text="Unrelated claim.", citations=[len(evidence) + 5]))
    citations = resolve_citations(sentences, evidence)
    assert [c.n for c in citations] == list(dict.fromkeys(item.number for item in picked))
    by_number = {item.number: item for item in evidence}
    for citation, sentence in zip(citations, sentences, strict=False):
        item = by_number[citation.n]
        document = corpus[item.source_id]
        assert document.text[citation.start : citation.end] == citation.quote
        assert sentence.text in citation.quote
        assert citation.reference == item.citation(citation.n)
        assert citation.reference.startswith(f"[{citation.n}] ")
        assert citation.url == f"https://pubmed.ncbi.nlm.nih.gov/{document.pmid}/"
        assert citation.chunk_id == item.chunk.chunk_id
        assert citation.source_id == document.source_id


def test_quote_prefers_supporting_sentences_of_the_chunk() -> None:
    passage = (
        "Background sentence about hospitals. Metformin lowered fasting glucose by 20 mg/dL. "
        "Weight loss was modest. Nausea occurred in 12% of patients. Follow-up lasted one year."
    )
    item = hand_evidence(1, passage)
    spans = split_sentences(passage)
    first = DraftSentence(text="Metformin reduced fasting glucose by 20 mg/dL.", citations=[1])
    (single,) = resolve_citations([first], [item])
    assert single.quote == passage[spans[1][0] : spans[1][1]]
    assert single.start == item.chunk.start + spans[1][0]
    # two citing sentences two apart: one quote spanning both
    second = DraftSentence(text="Nausea affected 12% of patients.", citations=[1])
    (joined,) = resolve_citations([first, second], [item])
    assert joined.quote == passage[spans[1][0] : spans[3][1]]
    # nothing shared: the whole chunk is the quote
    (whole,) = resolve_citations([DraftSentence(text="Zebra xylophone.", citations=[1])], [item])
    assert whole.quote == passage


def test_quote_keeps_the_best_single_sentence_when_matches_lie_far_apart() -> None:
    sentences = [f"Filler number {word} here." for word in ("alpha", "beta", "gamma", "delta")]
    passage = " ".join(["Metformin lowered glucose strongly.", *sentences, "Nausea was rare."])
    start, end = supporting_span(passage, ["Metformin lowered glucose strongly.", "Nausea rare."])
    assert passage[start:end] == "Metformin lowered glucose strongly."


def test_terms_stem_inflections_and_normalise_numbers() -> None:
    assert {stem(w) for w in ("reduces", "reduced", "reducing", "reduce")} == {"reduc"}
    assert stem("studies") == stem("studied") == stem("study")
    assert stem("stopped") == stem("stops")
    assert content_terms("The patients were treated with it.") == {"patient", "treat"}
    assert "not" in content_terms("Metformin did not reduce mortality.")
    assert numbers_in("1,250 adults; 2.50 mg; 97%; five sites; HbA1c") == {"1250", "2.5", "97", "5"}
    assert numbers_in("five sites", words=False) == set()


def _first_sentence(item: Evidence) -> str:
    start, end = split_sentences(item.chunk.text)[0]
    return item.chunk.text[start:end]


def test_passages_of_one_record_share_one_reference_number(corpus: dict[str, Document]) -> None:
    evidence = evidence_for(list(corpus.values())[100:106])
    by_source: dict[str, list[Evidence]] = {}
    for item in evidence:
        by_source.setdefault(item.source_id, []).append(item)
    split = next(items for items in by_source.values() if len(items) >= 2)
    other = next(items[0] for source, items in by_source.items() if source != split[0].source_id)
    second, first = split[1], split[0]  # cite the later chunk first
    sentences = [
        DraftSentence(text=_first_sentence(second), citations=[second.number or 0]),
        DraftSentence(text=_first_sentence(other), citations=[other.number or 0]),
        DraftSentence(text=_first_sentence(first), citations=[first.number or 0]),
        DraftSentence(
            text=f"{_first_sentence(first)} {_first_sentence(second)}",
            citations=[first.number or 0, second.number or 0],
        ),
    ]

    mapping = record_numbering(sentences, evidence)
    renumbered = renumber_sentences(sentences, mapping)
    assert [s.citations for s in renumbered] == [[1], [2], [1], [1]]
    text = render_answer(renumbered)
    assert text.count("[1]") == 3 and text.count("[2]") == 1
    assert {n for s in parse_cited_text(text) for n in s.citations} == {1, 2}

    citations = resolve_record_citations(sentences, evidence)
    assert [(c.n, c.source_id) for c in citations] == [
        (1, first.source_id),
        (2, other.source_id),
    ]
    record = citations[0]
    assert [p.chunk_id for p in record.passages] == [second.chunk.chunk_id, first.chunk.chunk_id]
    assert (record.quote, record.start, record.end, record.chunk_id) == (
        record.passages[0].quote,
        record.passages[0].start,
        record.passages[0].end,
        record.passages[0].chunk_id,
    )
    assert record.reference == first.citation(1) and record.reference.startswith("[1] ")
    assert citations[1].reference.startswith("[2] ")
    document = corpus[first.source_id]
    for passage, cited in zip(record.passages, (second, first), strict=True):
        assert document.text[passage.start : passage.end] == passage.quote
        assert _first_sentence(cited) in passage.quote
    assert [p.chunk_id for p in citations[1].passages] == [other.chunk.chunk_id]


def test_remap_numbers_drops_unknown_and_repeated_numbers() -> None:
    mapping = {4: 1, 7: 1, 2: 2}
    assert remap_numbers([7, 9, 2, 4, 2], mapping) == [1, 2]
    assert remap_numbers([], mapping) == []


def test_passage_citations_carry_their_one_passage() -> None:
    item = hand_evidence(1, "Metformin lowered glucose. Nausea was rare.")
    (citation,) = resolve_citations([DraftSentence(text="Nausea was rare.", citations=[1])], [item])
    assert [(p.chunk_id, p.quote, p.start, p.end) for p in citation.passages] == [
        (citation.chunk_id, citation.quote, citation.start, citation.end)
    ]
    bare = citation.model_copy(update={"passages": []})
    assert bare.cited_passages() == citation.passages
