"""Checking answer sentences against their cited passages (lexical, embedding and judge paths)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import pytest

from medgraph.errors import EngineError
from medgraph.knowledge.chunking import split_sentences
from medgraph.knowledge.citations import (
    OFF_TOPIC_FLAG,
    UNSUPPORTED_FLAG,
    DraftSentence,
    parse_cited_text,
    render_answer,
)
from medgraph.knowledge.embeddings import SentenceTransformerEmbedder
from medgraph.knowledge.types import Document, Evidence
from medgraph.knowledge.verification import (
    is_claim,
    rewrite_query,
    support_score,
    verify_sentences,
)
from tests.knowledge.grounding_support import evidence_for

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


def first_claim(item: Evidence, containing: str = "") -> str:
    """The first sentence of the chunk that is a claim (and matches ``containing``)."""
    for start, end in split_sentences(item.chunk.text):
        sentence = item.chunk.text[start:end]
        if is_claim(sentence) and re.search(containing, sentence):
            return sentence
    raise AssertionError(f"no claim matching {containing!r} in chunk {item.chunk.chunk_id}")


@pytest.fixture(scope="module")
def two_abstracts(corpus: dict[str, Document]) -> list[Evidence]:
    """Evidence 1: the lace-plant abstract's first chunk; evidence 2: an unrelated abstract's."""
    documents = list(corpus.values())
    lace = evidence_for([documents[0]])[0]
    other = evidence_for([documents[1]])[0]
    assert lace.source_id != other.source_id
    return [lace.with_number(1), other.with_number(2)]


def test_copied_sentence_is_kept_and_fabricated_one_removed(
    two_abstracts: list[Evidence],
) -> None:
    copied = first_claim(two_abstracts[0])
    answer = parse_cited_text(f"{copied[:-1]} [1]. Aspirin cures 97% of cancers [1].")
    kept, report = verify_sentences(answer, two_abstracts)
    assert [s.text for s in kept] == [copied]
    assert report.removed == ["Aspirin cures 97% of cancers."]
    assert [c.supported for c in report.sentences] == [True, False]
    assert report.sentences[0].score > 0.9 > 0.1 > report.sentences[1].score
    assert {c.method for c in report.sentences} == {"lexical+embedding"}
    assert report.supported_fraction == 0.5


def test_correct_sentence_citing_the_wrong_evidence_is_removed(
    two_abstracts: list[Evidence],
) -> None:
    copied = first_claim(two_abstracts[0])
    right = DraftSentence(text=copied, citations=[1])
    wrong = DraftSentence(text=copied, citations=[2])
    kept, report = verify_sentences([right, wrong], two_abstracts)
    assert kept == [right]
    assert report.removed == [copied]
    assert report.sentences[1].score < 0.5


def test_number_mismatch_is_flagged(corpus: dict[str, Document]) -> None:
    # the first chunk of the corpus with a sentence stating a two-digit number
    for document in corpus.values():
        item = evidence_for([document])[0]
        try:
            sentence = first_claim(item, r"(?<![\d.,])\d\d(?![\d.,])")
        except AssertionError:
            continue
        break
    number = re.search(r"(?<![\d.,])\d\d(?![\d.,])", sentence)
    assert number is not None
    replacement = next(
        str(n) for n in range(11, 99) if str(n) not in item.chunk.text and str(n) != number[0]
    )
    altered = sentence[: number.start()] + replacement + sentence[number.end() :]
    true_score = support_score(sentence, [item.chunk.text])
    altered_score = support_score(altered, [item.chunk.text])
    assert true_score > 0.9
    assert altered_score < 0.5  # nearly every word still matches, the number does not
    kept, report = verify_sentences(
        [DraftSentence(text=altered, citations=[1])], [item.with_number(1)]
    )
    assert kept == []
    assert report.supported_fraction == 0.0


def test_mark_mode_keeps_unsupported_sentences_flagged(two_abstracts: list[Evidence]) -> None:
    copied = first_claim(two_abstracts[0])
    answer = [
        DraftSentence(text=copied, citations=[1]),
        DraftSentence(text="Aspirin cures 97% of cancers.", citations=[1, 7]),
    ]
    kept, report = verify_sentences(answer, two_abstracts, action="mark")
    assert kept == [
        DraftSentence(text=copied, citations=[1]),
        DraftSentence(text=f"Aspirin cures 97% of cancers. {UNSUPPORTED_FLAG}", citations=[1]),
    ]
    assert report.removed == []
    assert report.sentences[1].citations == [1]  # the unknown [7] is never kept
    assert render_answer(kept).endswith("Aspirin cures 97% of cancers [1]. [unsupported]")
    # verifying a marked answer again neither double-flags nor loses the mark
    again, _ = verify_sentences(kept, two_abstracts, action="mark")
    assert again == kept


def test_judge_is_called_once_with_every_claim(two_abstracts: list[Evidence]) -> None:
    calls: list[list[tuple[str, str]]] = []

    def scripted_judge(pairs: Sequence[tuple[str, str]]) -> list[float]:
        calls.append(list(pairs))
        return [0.9, 0.2, 0.6]

    lace, other = two_abstracts
    answer = [
        DraftSentence(text="Hello!"),
        DraftSentence(text="Lace plants form holes by programmed cell death.", citations=[1]),
        DraftSentence(text="Mitochondria stay still during cell death.", citations=[1, 2]),
        DraftSentence(text="The claim cites nothing at all.", citations=[]),
        DraftSentence(text="Leaves have perforations.", citations=[2, 5]),
        DraftSentence(text="I am not sure about the dose."),
    ]
    kept, report = verify_sentences(answer, two_abstracts, judge=scripted_judge, threshold=0.5)
    assert len(calls) == 1
    assert calls[0] == [
        ("Lace plants form holes by programmed cell death.", lace.chunk.text),
        (
            "Mitochondria stay still during cell death.",
            f"{lace.chunk.text}\n\n{other.chunk.text}",
        ),
        ("Leaves have perforations.", other.chunk.text),
    ]
    assert [c.method for c in report.sentences] == [
        "no-claim", "judge", "judge", "judge", "judge", "no-claim",
    ]  # fmt: skip
    assert [c.score for c in report.sentences[1:5]] == [0.9, 0.2, 0.0, 0.6]
    assert [s.text for s in kept] == [
        "Hello!",
        "Lace plants form holes by programmed cell death.",
        "Leaves have perforations.",
        "I am not sure about the dose.",
    ]
    assert kept[2].citations == [2]
    assert report.removed == [
        "Mitochondria stay still during cell death.",
        "The claim cites nothing at all.",
    ]
    assert report.supported_fraction == pytest.approx(2 / 4)


def test_judge_is_not_called_without_claims_and_bad_replies_are_refused(
    two_abstracts: list[Evidence],
) -> None:
    def failing_judge(pairs: Sequence[tuple[str, str]]) -> list[float]:
        raise AssertionError("called without claims")

    kept, report = verify_sentences(
        [DraftSentence(text="Thank you for asking."), DraftSentence(text="What dose?")],
        two_abstracts,
        judge=failing_judge,
    )
    assert len(kept) == 2
    assert report.supported_fraction == 1.0
    claim = [DraftSentence(text="Lace plants form holes in leaves.", citations=[1])]
    with pytest.raises(EngineError, match="returned 2 scores for 1 sentences"):
        verify_sentences(claim, two_abstracts, judge=lambda pairs: [0.5, 0.5])
    with pytest.raises(EngineError, match="between 0 and 1"):
        verify_sentences(claim, two_abstracts, judge=lambda pairs: [float("nan")])
    with pytest.raises(ValueError, match="action"):
        verify_sentences(claim, two_abstracts, action="delete")  # type: ignore[arg-type]


def test_supported_fraction_counts_claims_only(two_abstracts: list[Evidence]) -> None:
    lace_sentences = [
        two_abstracts[0].chunk.text[s:e] for s, e in split_sentences(two_abstracts[0].chunk.text)
    ]
    claims = [s for s in lace_sentences if is_claim(s)][:2]
    answer = [
        DraftSentence(text="Good morning."),
        *(DraftSentence(text=text, citations=[1]) for text in claims),
        DraftSentence(text="Insulin pumps reduce hypoglycaemia in toddlers.", citations=[1]),
    ]
    _, report = verify_sentences(answer, two_abstracts)
    assert report.supported_fraction == pytest.approx(2 / 3)
    _, empty = verify_sentences([DraftSentence(text="Good morning.")], two_abstracts)
    assert empty.supported_fraction == 1.0
    assert empty.sentences[0].method == "no-claim"


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("Metformin lowers fasting glucose in type 2 diabetes.", True),
        ("Nausea occurred in 12% of patients.", True),
        ("Hello!", False),
        ("Hi there, thanks for the question.", False),
        ("I am not sure.", False),
        ("I could not find evidence on this question.", False),
        ("Is metformin safe in pregnancy?", False),
        ("This answer is not for clinical use.", False),
        ("Outputs are not intended to directly inform clinical diagnosis.", False),
        ("Please consult your doctor before changing medication.", False),
        ("Extractive answer (no language model): sentences quoted from the cited sources.", False),
        ("Here is what the sources say:", False),
        ("Yes.", False),
        ("", False),
    ],
)
def test_is_claim(sentence: str, expected: bool) -> None:
    assert is_claim(sentence) is expected


def test_support_score_with_minilm_credits_paraphrases(
    minilm: SentenceTransformerEmbedder,
) -> None:
    passage = (
        "Compared to usual care, telephone counseling seemed particularly effective at promoting "
        "change among nonadherent women. Tailored print was less effective."
    )
    paraphrase = (
        "For women who were not adherent, counselling over the telephone was especially effective."
    )
    unrelated = "Double balloon enteroscopy is safe in a community hospital."
    lexical = support_score(paraphrase, [passage])
    semantic = support_score(paraphrase, [passage], minilm.embed_documents)
    # spelling and wording differ: words alone fall short, the embedding recognises the meaning
    assert 0.0 <= lexical < 0.5 <= semantic <= 1.0
    assert semantic > support_score(unrelated, [passage], minilm.embed_documents) + 0.3
    verbatim = "Tailored print was less effective."
    assert support_score(verbatim, [passage], minilm.embed_documents) == pytest.approx(1.0)


def test_verify_with_embeddings_embeds_once(
    minilm: SentenceTransformerEmbedder, two_abstracts: list[Evidence]
) -> None:
    calls: list[int] = []

    def counting_embed(texts: Sequence[str]) -> np.ndarray:
        calls.append(len(texts))
        return minilm.embed_documents(texts)

    copied = first_claim(two_abstracts[0])
    answer = [
        DraftSentence(text=copied, citations=[1]),
        DraftSentence(text="Aspirin cures 97% of cancers.", citations=[2]),
    ]
    kept, report = verify_sentences(answer, two_abstracts, embed=counting_embed)
    assert len(calls) == 1
    assert [s.text for s in kept] == [copied]
    assert report.supported_fraction == 0.5
    with pytest.raises(ValueError, match="one vector per text"):
        verify_sentences(answer, two_abstracts, embed=lambda texts: np.zeros((1, 3)))


def test_rewrite_query_adds_distinctive_words_of_unsupported_claims() -> None:
    question = "Does metformin reduce mortality in heart failure?"
    unsupported = [
        "Metformin reduced mortality in patients with cardiorenal syndrome [2].",
        "Lactic acidosis was rare with metformin.",
        "Cardiorenal outcomes and lactic acidosis were studied.",
    ]
    query = rewrite_query(question, unsupported)
    assert query.startswith(question + " ")
    added = query[len(question) :].split()
    assert added == ["cardiorenal", "syndrome", "lactic", "acidosis", "rare", "outcomes"]
    assert (
        len(rewrite_query(question, unsupported, max_terms=2).split()) == len(question.split()) + 2
    )
    assert rewrite_query(question, ["Metformin reduces mortality."]) == question
    assert rewrite_query(question, []) == question


LACE_QUESTION = (
    "Do mitochondria play a role in remodelling lace plant leaves during programmed cell death?"
)


def test_off_topic_claims_are_removed_or_marked(two_abstracts: list[Evidence]) -> None:
    on_topic = first_claim(two_abstracts[0])
    off_topic = first_claim(two_abstracts[1])
    answer = [
        DraftSentence(text=on_topic, citations=[1]),
        DraftSentence(text=off_topic, citations=[2]),
    ]
    kept, report = verify_sentences(answer, two_abstracts, question=LACE_QUESTION)
    # both are quoted verbatim, so both are supported; only one is about the question
    assert [c.supported for c in report.sentences] == [True, True]
    assert [c.relevant for c in report.sentences] == [True, False]
    assert [s.text for s in kept] == [on_topic]
    assert report.removed == [off_topic]
    assert report.supported_fraction == 1.0 and report.relevant_fraction == 0.5

    kept, report = verify_sentences(answer, two_abstracts, question=LACE_QUESTION, off_topic="mark")
    assert [s.text for s in kept] == [on_topic, f"{off_topic} {OFF_TOPIC_FLAG}"]
    assert parse_cited_text(render_answer(kept))[1].text.endswith(OFF_TOPIC_FLAG)
    # verifying a marked answer again reads the flag off, not as part of the claim
    again, _ = verify_sentences(kept, two_abstracts, question=LACE_QUESTION, off_topic="mark")
    assert again == kept
    # without a question relevance is not checked
    _, report = verify_sentences(answer, two_abstracts)
    assert report.relevant_fraction == 1.0


def test_grounding_judge_decides_support_and_relevance_in_one_call(
    two_abstracts: list[Evidence],
) -> None:
    calls: list[list[tuple[str, str, str]]] = []

    def grounding_judge(triples: Sequence[tuple[str, str, str]]) -> list[tuple[float, float]]:
        calls.append(list(triples))
        return [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)]

    answer = [
        DraftSentence(text="Lace plants form holes by programmed cell death.", citations=[1]),
        DraftSentence(text="Another study measured cell walls in cold.", citations=[2]),
        DraftSentence(text="Mitochondria stay still during cell death.", citations=[1]),
    ]
    kept, report = verify_sentences(
        answer, two_abstracts, question=LACE_QUESTION, grounding_judge=grounding_judge
    )
    assert len(calls) == 1 and [t[0] for t in calls[0]] == [LACE_QUESTION] * 3
    assert [(c.supported, c.relevant, c.method) for c in report.sentences] == [
        (True, True, "judge"), (True, False, "judge"), (False, True, "judge"),
    ]  # fmt: skip
    assert [s.text for s in kept] == [answer[0].text]
    assert report.supported_fraction == pytest.approx(2 / 3)
    assert report.relevant_fraction == pytest.approx(2 / 3)
    with pytest.raises(EngineError, match="two probabilities"):
        verify_sentences(
            answer[:1], two_abstracts, question=LACE_QUESTION,
            grounding_judge=lambda triples: [(1.0, 2.0)],
        )  # fmt: skip
