"""Identifiers an answer sentence does not cite are taken out of its text (issue 26, finding 1)."""

from __future__ import annotations

from medgraph.knowledge.citations import DraftSentence
from medgraph.knowledge.identifiers import scrub_report, scrub_sentences, strip_foreign_identifiers
from medgraph.knowledge.types import Chunk, Document, Evidence


def _evidence(number: int, document: Document) -> Evidence:
    text = "Statins reduced stroke recurrence."
    chunk = Chunk(
        chunk_id=f"c{number}", source_id=document.source_id, index=0, text=text, start=0, end=4
    )
    return Evidence(chunk=chunk, document=document, score=1.0, number=number)


def test_foreign_markers_pmids_dois_and_urls_are_removed_with_their_lead_in() -> None:
    text, removed = strip_foreign_identifiers(
        "Statins reduced stroke recurrence, as shown in PMID 99999999 [99999999].", set()
    )
    assert text == "Statins reduced stroke recurrence."
    assert removed == ["PMID 99999999", "[99999999]"]
    text, removed = strip_foreign_identifiers(
        "Statins helped (doi:10.1000/x.y; www.evil.example/a) in trials [3].", set()
    )
    assert text == "Statins helped in trials."
    assert removed == ["doi:10.1000/x.y", "www.evil.example/a", "[3]"]


def test_fullwidth_and_zero_width_identifiers_are_removed() -> None:
    text, removed = strip_foreign_identifiers(
        "Statins helped, see ＰＭＩＤ　９９９９９９９９ and https://evil.exa\u200bmple/phish.",
        set(),
    )
    assert text == "Statins helped."
    assert removed == ["PMID 99999999", "https://evil.example/phish"]


def test_a_cited_records_own_identifiers_stay() -> None:
    cited = Document(source_id="12345", pmid="12345", doi="10.1000/own")
    other = Document(source_id="777", pmid="777")
    sentences = [
        DraftSentence(
            text="Statins helped (PMID: 12345; PMID 777) as in doi:10.1000/own.", citations=[1]
        ),
        DraftSentence(text="No identifier here.", citations=[2]),
    ]
    scrubbed = scrub_sentences(sentences, [_evidence(1, cited), _evidence(2, other)])
    assert [s.text for s in scrubbed] == [
        "Statins helped (PMID: 12345) as in doi:10.1000/own.",
        "No identifier here.",
    ]
    assert scrubbed[0].citations == [1] and scrubbed[0].removed_identifiers == ["PMID 777"]
    report = scrub_report(scrubbed)
    assert [(r.sentence, r.removed) for r in report] == [(scrubbed[0].text, ["PMID 777"])]


def test_text_without_identifiers_is_unchanged() -> None:
    text = "Mean age was 54 [range 40-70] years, p < 0.05 at 10.5 mg/dL."
    assert strip_foreign_identifiers(text, set()) == (text, [])
