"""Tests for medgraph.knowledge.readers: every format, content-based detection, folder reading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medgraph.errors import IngestError
from medgraph.knowledge.readers import (
    FORMATS,
    ReadFailure,
    detect_format,
    iter_documents,
    read_file,
    read_paths,
)
from medgraph.knowledge.types import Document
from tests.support import shared_data_dir

DATA_DIR = shared_data_dir()
CORPUS = DATA_DIR / "pubmedqa" / "corpus.jsonl"


# --------------------------------------------------------------------------------------------------
# Fixture builders


def make_pdf(pages: list[list[str]], title: str | None = None) -> bytes:
    """A minimal valid PDF: one Helvetica text line per string, one list of lines per page."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objects: list[bytes] = []  # object n is objects[n - 1]
    page_count = len(pages)
    first_page = 4  # 1 catalog, 2 pages, 3 font, then (page, content) pairs
    kids = " ".join(f"{first_page + 2 * i} 0 R" for i in range(page_count))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {page_count} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for index, lines in enumerate(pages):
        content_number = first_page + 2 * index + 1
        objects.append(
            (
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content_number} 0 R >>"
            ).encode()
        )
        operators = "".join(f"({escape(line)}) Tj T* " for line in lines)
        stream = f"BT /F1 11 Tf 14 TL 72 720 Td {operators}ET".encode() if lines else b""
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    info_number = None
    if title is not None:
        objects.append(f"<< /Title ({escape(title)}) /Producer (medgraph tests) >>".encode())
        info_number = len(objects)

    output = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(output))
        output += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref_offset = len(output)
    output += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        output += f"{offset:010d} 00000 n \n".encode()
    trailer = f"<< /Size {len(objects) + 1} /Root 1 0 R"
    if info_number is not None:
        trailer += f" /Info {info_number} 0 R"
    output += f"trailer\n{trailer} >>\nstartxref\n{xref_offset}\n%%EOF\n".encode()
    return bytes(output)


EFETCH_XML = """<?xml version="1.0" ?>
<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" \
"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">
<PubmedArticleSet>
<PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM" IndexingMethod="Automated">
    <PMID Version="1">90000001</PMID>
    <DateCompleted><Year>2021</Year><Month>06</Month><Day>01</Day></DateCompleted>
    <Article PubModel="Print-Electronic">
      <Journal>
        <ISSN IssnType="Electronic">0000-0001</ISSN>
        <JournalIssue CitedMedium="Internet">
          <Volume>12</Volume>
          <Issue>3</Issue>
          <PubDate><Year>2021</Year><Month>Mar</Month></PubDate>
        </JournalIssue>
        <Title>Journal of Example Therapeutics</Title>
        <ISOAbbreviation>J Example Ther</ISOAbbreviation>
      </Journal>
      <ArticleTitle>Example trial of drug X in <i>fictional</i> hypertension.</ArticleTitle>
      <Pagination><StartPage>101</StartPage><EndPage>109</EndPage></Pagination>
      <ELocationID EIdType="doi" ValidYN="Y">10.0000/example.2021.001</ELocationID>
      <Abstract>
        <AbstractText Label="BACKGROUND" NlmCategory="BACKGROUND">Drug X is an invented
          compound used only in this example.</AbstractText>
        <AbstractText Label="METHODS" NlmCategory="METHODS">We randomised 120 imaginary
          patients to drug X or placebo.</AbstractText>
        <AbstractText Label="RESULTS" NlmCategory="RESULTS">Systolic pressure fell by 2.5 mmHg
          (p &lt; 0.05) vs. placebo.</AbstractText>
        <AbstractText Label="CONCLUSIONS" NlmCategory="CONCLUSIONS">Drug X lowered pressure in
          this made-up trial.</AbstractText>
        <CopyrightInformation>No rights: example text.</CopyrightInformation>
      </Abstract>
      <AuthorList CompleteYN="Y">
        <Author ValidYN="Y"><LastName>Doe</LastName><ForeName>Jane A</ForeName>\
<Initials>JA</Initials></Author>
        <Author ValidYN="Y"><LastName>Roe</LastName><ForeName>Richard</ForeName>\
<Initials>R</Initials></Author>
        <Author ValidYN="Y"><CollectiveName>Example Trial Group</CollectiveName></Author>
      </AuthorList>
      <Language>eng</Language>
      <PublicationTypeList>
        <PublicationType UI="D016449">Randomized Controlled Trial</PublicationType>
      </PublicationTypeList>
    </Article>
    <MeshHeadingList>
      <MeshHeading><DescriptorName UI="D006973" MajorTopicYN="Y">Hypertension</DescriptorName>\
</MeshHeading>
      <MeshHeading><DescriptorName UI="D006801" MajorTopicYN="N">Humans</DescriptorName>\
</MeshHeading>
    </MeshHeadingList>
  </MedlineCitation>
  <PubmedData>
    <PublicationStatus>ppublish</PublicationStatus>
    <ArticleIdList>
      <ArticleId IdType="pubmed">90000001</ArticleId>
      <ArticleId IdType="doi">10.0000/example.2021.001</ArticleId>
    </ArticleIdList>
  </PubmedData>
</PubmedArticle>
<PubmedArticle>
  <MedlineCitation Status="PubMed-not-MEDLINE" Owner="NLM">
    <PMID Version="1">90000002</PMID>
    <Article PubModel="Print">
      <Journal>
        <JournalIssue CitedMedium="Print">
          <PubDate><MedlineDate>2019 Nov-Dec</MedlineDate></PubDate>
        </JournalIssue>
        <ISOAbbreviation>Example Rep</ISOAbbreviation>
      </Journal>
      <ArticleTitle>A second invented report about drug Y.</ArticleTitle>
      <Abstract>
        <AbstractText>Drug Y was given to no one. This abstract has no labels.</AbstractText>
      </Abstract>
      <AuthorList CompleteYN="Y">
        <Author ValidYN="Y"><LastName>Poe</LastName><Initials>E</Initials></Author>
      </AuthorList>
    </Article>
  </MedlineCitation>
  <PubmedData>
    <ArticleIdList><ArticleId IdType="pubmed">90000002</ArticleId></ArticleIdList>
  </PubmedData>
</PubmedArticle>
<PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
    <PMID Version="1">90000003</PMID>
    <Article PubModel="Print">
      <Journal><JournalIssue><PubDate><Year>2020</Year></PubDate></JournalIssue>
        <Title>Example Letters</Title></Journal>
      <ArticleTitle>A letter without an abstract.</ArticleTitle>
    </Article>
  </MedlineCitation>
</PubmedArticle>
</PubmedArticleSet>
"""

PUBMEDQA_RECORDS: list[dict[str, object]] = [
    {
        "pmid": "11111111",
        "year": 2015,
        "mesh": ["Humans", "Hypertension"],
        "sections": [
            {"label": "BACKGROUND", "text": "Drug X is invented for this test."},
            {"label": "RESULTS", "text": "  Blood pressure fell by 2.5 mmHg vs. placebo.  "},
            {"label": "CONCLUSIONS", "text": "Drug X works in fiction."},
        ],
    },
    {
        "pmid": 22222222,
        "year": None,
        "mesh": [],
        "title": "An invented title",
        "authors": ["Doe JA", "Roe R"],
        "journal": "Example Journal",
        "doi": "10.0000/example.2",
        "sections": [{"label": "RESULTS", "text": "Nothing happened. Really nothing."}],
    },
]


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def assert_sections_slice(document: Document, expected: list[tuple[str, str]]) -> None:
    assert [(label, document.text[start:end]) for label, start, end in document.sections] == (
        expected
    )


# --------------------------------------------------------------------------------------------------
# PubMedQA JSONL


def test_pubmedqa_record_fields_and_exact_sections(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "corpus.jsonl", PUBMEDQA_RECORDS)
    first, second = read_file(path)

    assert first.source_id == first.pmid == "11111111"
    assert first.year == 2015
    assert first.title is None and first.journal is None and first.authors == ()
    assert first.url is None
    assert first.link == "https://pubmed.ncbi.nlm.nih.gov/11111111/"
    assert first.path == str(path.resolve())
    assert first.extra["mesh"] == "Humans; Hypertension"
    assert_sections_slice(
        first,
        [
            ("BACKGROUND", "Drug X is invented for this test."),
            ("RESULTS", "Blood pressure fell by 2.5 mmHg vs. placebo."),
            ("CONCLUSIONS", "Drug X works in fiction."),
        ],
    )

    assert second.source_id == "22222222"  # an integer pmid becomes bare digits
    assert second.year is None
    assert second.title == "An invented title"
    assert second.authors == ("Doe JA", "Roe R")
    assert second.journal == "Example Journal"
    assert second.doi == "10.0000/example.2"
    assert second.citation(1) == (
        "[1] Doe JA et al. An invented title. Example Journal. PMID:22222222"
    )


def test_pubmedqa_malformed_line_fails_whole_file_with_line_number(tmp_path: Path) -> None:
    good = json.dumps(PUBMEDQA_RECORDS[0])
    path = tmp_path / "corpus.jsonl"
    path.write_text(f"{good}\n\n{good[: len(good) // 2]}\n{good}\n", encoding="utf-8")

    with pytest.raises(IngestError, match=r"line 3 is not valid JSON") as error:
        read_file(path)
    assert str(path) in str(error.value)

    result = read_paths([path])
    assert result.documents == []
    assert [failure.path for failure in result.failures] == [str(path.resolve())]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"pmid": "PMC123", "sections": [{"label": "A", "text": "x"}]}, "'pmid' must be"),
        ({"pmid": "1", "sections": []}, "'sections' must be a non-empty list"),
        ({"pmid": "1", "sections": [{"label": "A"}]}, "section 1 must be an object"),
        ({"pmid": "1", "sections": [{"label": "A", "text": "  "}]}, "every section's text"),
    ],
)
def test_pubmedqa_invalid_record_names_the_line(
    tmp_path: Path, record: dict[str, object], message: str
) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [PUBMEDQA_RECORDS[0], record])
    with pytest.raises(IngestError, match=message) as error:
        read_file(path, "pubmedqa")
    assert "line 2" in str(error.value)


def test_real_pubmedqa_corpus_reads_every_document_exactly() -> None:
    # split on "\n" only: some abstracts hold characters (U+2028...) that str.splitlines() cuts at
    lines = CORPUS.read_text(encoding="utf-8").split("\n")
    raw = [json.loads(line) for line in lines if line.strip()]
    documents = read_file(CORPUS)

    assert len(documents) == len(raw) == 1000
    for document, record in zip(documents, raw, strict=True):
        assert document.source_id == document.pmid == record["pmid"]
        assert document.year == record["year"]
        assert document.title is None and document.url is None
        assert document.extra["mesh"] == "; ".join(record["mesh"])
        assert_sections_slice(
            document, [(section["label"], section["text"]) for section in record["sections"]]
        )


# --------------------------------------------------------------------------------------------------
# PubMed XML


def test_pubmed_xml_efetch_records(tmp_path: Path) -> None:
    path = tmp_path / "efetch.xml"
    path.write_text(EFETCH_XML, encoding="utf-8")
    assert detect_format(path) == "pubmed-xml"
    first, second, third = read_file(path)

    assert first.source_id == first.pmid == "90000001"
    assert first.title == "Example trial of drug X in fictional hypertension."
    assert first.authors == ("Doe JA", "Roe R", "Example Trial Group")
    assert first.journal == "Journal of Example Therapeutics"
    assert first.extra["journal_abbreviation"] == "J Example Ther"
    assert first.year == 2021
    assert first.doi == "10.0000/example.2021.001"
    assert first.extra["mesh"] == "Hypertension; Humans"
    assert_sections_slice(
        first,
        [
            ("BACKGROUND", "Drug X is an invented compound used only in this example."),
            ("METHODS", "We randomised 120 imaginary patients to drug X or placebo."),
            ("RESULTS", "Systolic pressure fell by 2.5 mmHg (p < 0.05) vs. placebo."),
            ("CONCLUSIONS", "Drug X lowered pressure in this made-up trial."),
        ],
    )
    assert "No rights" not in first.text

    assert second.year == 2019  # first 4-digit year of MedlineDate
    assert second.journal == "Example Rep"  # ISOAbbreviation when Title is absent
    assert second.doi is None
    assert second.authors == ("Poe E",)
    assert_sections_slice(
        second, [("", "Drug Y was given to no one. This abstract has no labels.")]
    )

    # a record without an abstract keeps its metadata and has no text to index
    assert third.title == "A letter without an abstract."
    assert third.text == "" and third.sections == ()


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE PubmedArticleSet [<!ENTITY secret SYSTEM "file:///etc/hostname">]>',
        '<!DOCTYPE PubmedArticleSet [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>',
    ],
)
def test_pubmed_xml_entity_declarations_are_refused(tmp_path: Path, prolog: str) -> None:
    body = EFETCH_XML.split("\n", 3)[3].replace("invented", "&secret;&b;", 1)
    path = tmp_path / "hostile.xml"
    path.write_text(f'<?xml version="1.0"?>\n{prolog}\n{body}', encoding="utf-8")

    assert detect_format(path) == "pubmed-xml"
    with pytest.raises(IngestError, match="ENTITY"):
        read_file(path)


def test_pubmed_xml_in_another_encoding_is_refused(tmp_path: Path) -> None:
    # the entity checks read UTF-8 bytes, so other encodings are refused rather than decoded
    declared = EFETCH_XML.replace(
        '<?xml version="1.0" ?>', '<?xml version="1.0" encoding="UTF-16"?>'
    )
    path = tmp_path / "wide.xml"
    path.write_bytes(declared.encode("utf-16"))
    with pytest.raises(IngestError, match="XML is not UTF-8"):
        read_file(path, "pubmed-xml")


def test_pubmed_xml_truncated_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "cut.xml"
    path.write_text(EFETCH_XML[: len(EFETCH_XML) // 2], encoding="utf-8")
    with pytest.raises(IngestError, match=r"corrupt XML at line \d+"):
        read_file(path)


def test_pubmed_xml_without_articles_fails(tmp_path: Path) -> None:
    path = tmp_path / "none.xml"
    path.write_text("<PubmedArticleSet></PubmedArticleSet>", encoding="utf-8")
    with pytest.raises(IngestError, match="no <PubmedArticle> records"):
        read_file(path)


# --------------------------------------------------------------------------------------------------
# PDF


def test_pdf_pages_and_metadata_title(tmp_path: Path) -> None:
    path = tmp_path / "trial.pdf"
    path.write_bytes(
        make_pdf(
            [
                ["Example trial of drug X (an invented compound).", "Patients were imaginary."],
                [],  # a page with no text is left out of the page ranges
                ["Results: pressure fell by 2.5 mmHg."],
            ],
            title="Example Trial Report",
        )
    )
    (document,) = read_file(path)

    assert document.title == "Example Trial Report"
    assert document.source_id == document.path == str(path.resolve())
    assert [number for number, _, _ in document.pages] == [1, 3]
    first_page = document.text[document.pages[0][1] : document.pages[0][2]]
    third_page = document.text[document.pages[1][1] : document.pages[1][2]]
    assert "Example trial of drug X (an invented compound)." in first_page
    assert "Patients were imaginary." in first_page
    assert third_page == "Results: pressure fell by 2.5 mmHg."
    assert third_page not in first_page


def test_pdf_without_metadata_title_uses_file_name(tmp_path: Path) -> None:
    path = tmp_path / "guideline.pdf"
    path.write_bytes(make_pdf([["Some guideline text."]]))
    (document,) = read_file(path)
    assert document.title == "guideline.pdf"


def test_pdf_without_text_asks_for_ocr(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(make_pdf([[], []], title="Scanned"))
    with pytest.raises(IngestError, match=r"no extractable text \(scanned PDF\? run OCR first\)"):
        read_file(path)


@pytest.mark.parametrize("keep", [0.3, 0.8])
def test_truncated_pdf_is_corrupt(tmp_path: Path, keep: float) -> None:
    data = make_pdf([["Example trial of drug X."], ["Second page."]], title="Cut")
    path = tmp_path / "broken.pdf"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(IngestError, match="corrupt or unreadable PDF"):
        read_file(path)


# --------------------------------------------------------------------------------------------------
# Markdown and text

MARKDOWN = """# Hypertension notes

Intro paragraph about drug X.

## Treatment

Start low, go slow.

```python
# not a heading inside a code fence
dose = 1
```

Results
-------

Pressure fell.
"""


def test_markdown_sections_and_title(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    (document,) = read_file(path)

    assert document.title == "Hypertension notes"
    assert document.source_id == str(path.resolve())
    assert_sections_slice(
        document,
        [
            ("Hypertension notes", "Intro paragraph about drug X."),
            (
                "Treatment",
                "Start low, go slow.\n\n```python\n# not a heading inside a code fence\n"
                "dose = 1\n```",
            ),
            ("Results", "Pressure fell."),
        ],
    )


def test_markdown_front_matter_and_preamble(tmp_path: Path) -> None:
    path = tmp_path / "page.md"
    path.write_text(
        "---\ntitle: Front matter title\ntags: [a]\n---\nPreamble text.\n\n# Part one\n\nBody.\n",
        encoding="utf-8",
    )
    (document,) = read_file(path)
    assert document.title == "Front matter title"
    assert_sections_slice(document, [("", "Preamble text."), ("Part one", "Body.")])


def test_plain_text_title_is_first_line_and_has_no_sections(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("\n\nDrug X summary\r\nIt lowers pressure.\r\n", encoding="utf-8")
    (document,) = read_file(path)
    assert document.title == "Drug X summary"
    assert document.sections == ()
    assert document.text == "\n\nDrug X summary\nIt lowers pressure.\n"  # line endings normalised


def test_text_with_long_first_line_uses_file_name(tmp_path: Path) -> None:
    path = tmp_path / "essay.txt"
    path.write_text("word " * 100, encoding="utf-8")
    assert read_file(path)[0].title == "essay.txt"


def test_rst_underlined_headings(tmp_path: Path) -> None:
    path = tmp_path / "doc.rst"
    path.write_text("=====\nTitle\n=====\n\nIntro.\n\nMethods\n~~~~~~~\n\nWe did it.\n")
    (document,) = read_file(path)
    assert document.title == "Title"
    assert_sections_slice(document, [("Title", "Intro."), ("Methods", "We did it.")])


def test_non_utf8_text_fails(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Résumé of the café study.".encode("latin-1"))
    with pytest.raises(IngestError, match="not UTF-8"):
        read_file(path)
    with pytest.raises(IngestError, match="not UTF-8"):
        read_file(path, "text")


def test_binary_file_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "blob.txt"
    path.write_bytes(b"abc\x00\x01\x02" * 50)
    with pytest.raises(IngestError, match="unsupported format: binary"):
        detect_format(path)


# --------------------------------------------------------------------------------------------------
# Generic JSONL


def test_generic_jsonl_metadata(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "notes.jsonl",
        [
            {
                "id": "guideline-7",
                "text": "Give drug X with food.",
                "metadata": {
                    "title": "Invented guideline",
                    "year": "2022",
                    "authors": ["Doe JA"],
                    "journal": "Example Guidelines",
                    "doi": "10.0000/g7",
                    "url": "https://pmc.ncbi.nlm.nih.gov/articles/PMC7/",
                    "pmid": "33333333",
                    "publisher": "Nobody",
                    "grade": 2,
                    "tags": ["x", "y"],
                },
            },
            {"id": 8, "text": "No metadata here.", "url": "https://example.org/g8"},
        ],
    )
    first, second = read_file(path)
    assert second.url is None  # links only to PubMed, PMC or DOI hosts are kept
    assert first.source_id == "guideline-7"
    assert first.title == "Invented guideline"
    assert first.year == 2022
    assert first.authors == ("Doe JA",)
    assert first.journal == "Example Guidelines"
    assert (first.doi, first.url, first.pmid) == (
        "10.0000/g7",
        "https://pmc.ncbi.nlm.nih.gov/articles/PMC7/",
        "33333333",
    )
    assert first.extra == {"publisher": "Nobody", "grade": "2", "tags": "x; y"}
    assert first.text == "Give drug X with food."
    assert second.source_id == "8" and second.title is None and second.extra == {}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"id": "a", "text": ""}, "'text' must be a non-empty string"),
        ({"id": None, "text": "x"}, "'id' must be"),
        ({"id": "a", "text": "x", "metadata": [1]}, "'metadata' must be an object"),
    ],
)
def test_generic_jsonl_invalid_line(tmp_path: Path, line: dict[str, object], message: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"id": "ok", "text": "fine"}, line])
    with pytest.raises(IngestError, match=message) as error:
        read_file(path)
    assert "line 2" in str(error.value)


# --------------------------------------------------------------------------------------------------
# Detection and errors common to all formats


def test_detection_uses_content_not_extension(tmp_path: Path) -> None:
    pubmedqa_as_txt = write_jsonl(tmp_path / "abstracts.txt", PUBMEDQA_RECORDS)
    pdf_as_dat = tmp_path / "paper.dat"
    pdf_as_dat.write_bytes(make_pdf([["Hello from a PDF."]]))
    jsonl_as_md = write_jsonl(tmp_path / "records.md", [{"id": "1", "text": "x"}])
    xml_as_txt = tmp_path / "efetch.txt"
    xml_as_txt.write_text(EFETCH_XML, encoding="utf-8")
    text_as_pdf = tmp_path / "notes.pdf"
    text_as_pdf.write_text("Just some notes.", encoding="utf-8")

    assert detect_format(pubmedqa_as_txt) == "pubmedqa"
    assert detect_format(pdf_as_dat) == "pdf"
    assert detect_format(jsonl_as_md) == "jsonl"
    assert detect_format(xml_as_txt) == "pubmed-xml"
    assert detect_format(text_as_pdf) == "text"
    assert read_file(pubmedqa_as_txt)[0].pmid == "11111111"
    assert "Hello from a PDF." in read_file(pdf_as_dat)[0].text


def test_extension_breaks_ties_for_markup(tmp_path: Path) -> None:
    markdown = tmp_path / "readme.md"
    markdown.write_text('<p align="center">Logo</p>\n\n# Title\n\nBody.\n', encoding="utf-8")
    html = tmp_path / "page.html"
    html.write_text("<html><body>Hi</body></html>", encoding="utf-8")
    assert detect_format(markdown) == "text"
    with pytest.raises(IngestError, match="root element is <html>"):
        detect_format(html)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("records.jsonl", b'{"id": "1", "text": ', "line 1 is not valid JSON"),
        ("other.jsonl", b'{"question": "q"}\n', "keys found: question"),
        ("array.json", b'[{"id": 1}]', "a JSON array"),
        ("archive.gz", b"\x1f\x8b\x08\x00rest", "gzip-compressed"),
        ("wide.txt", "Hello".encode("utf-16"), "UTF-16"),
    ],
)
def test_unsupported_content_is_named(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError, match=message) as error:
        detect_format(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.pdf", "empty.txt", "empty.xml"])
@pytest.mark.parametrize("content", [b"", b"  \n\n"])
def test_empty_files_fail(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError, match="empty file"):
        read_file(path)


def test_explicit_format_mismatch_and_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("Plain words.", encoding="utf-8")
    with pytest.raises(IngestError, match="corrupt or unreadable PDF"):
        read_file(path, "pdf")
    with pytest.raises(IngestError, match="line 1 is not valid JSON"):
        read_file(path, "jsonl")
    with pytest.raises(IngestError, match="unknown format 'docx'"):
        read_file(path, "docx")
    assert set(FORMATS) == {"auto", "pubmedqa", "pubmed-xml", "pdf", "text", "jsonl"}


def test_missing_file_and_folder_given_to_read_file(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file"):
        read_file(tmp_path / "missing.txt")
    with pytest.raises(IngestError, match="is a folder"):
        read_file(tmp_path)


# --------------------------------------------------------------------------------------------------
# Folders and many paths


def build_tree(root: Path) -> dict[str, Path]:
    (root / "a" / "nested").mkdir(parents=True)
    (root / ".hidden").mkdir()
    paths = {
        "pubmedqa": write_jsonl(root / "a" / "corpus.jsonl", PUBMEDQA_RECORDS),
        "markdown": root / "a" / "nested" / "notes.md",
        "pdf": root / "b.pdf",
        "corrupt": root / "a" / "broken.jsonl",
        "empty": root / "a" / "nested" / "empty.txt",
        "latin1": root / "z.txt",
        "hidden_file": root / ".secret.txt",
        "hidden_dir_file": root / ".hidden" / "inside.txt",
    }
    paths["markdown"].write_text(MARKDOWN, encoding="utf-8")
    paths["pdf"].write_bytes(make_pdf([["PDF body text."]]))
    paths["corrupt"].write_text('{"id": "1", "text": "ok"}\n{"id": 2, "text"\n', encoding="utf-8")
    paths["empty"].write_bytes(b"")
    paths["latin1"].write_bytes("café".encode("latin-1"))
    paths["hidden_file"].write_text("hidden", encoding="utf-8")
    paths["hidden_dir_file"].write_text("hidden", encoding="utf-8")
    (root / "dangling.txt").symlink_to(root / "gone.txt")
    return paths


def test_read_paths_recurses_and_collects_failures(tmp_path: Path) -> None:
    paths = build_tree(tmp_path)
    missing = tmp_path / "does-not-exist"
    result = read_paths([tmp_path, missing])

    resolved = {name: str(path.resolve()) for name, path in paths.items()}
    expected_files = sorted(
        [
            resolved["corrupt"],
            resolved["pubmedqa"],
            resolved["empty"],
            resolved["markdown"],
            resolved["pdf"],
            resolved["latin1"],
        ]
    )
    assert result.files == expected_files  # sorted walk: a/..., a/nested/..., b.pdf, z.txt
    assert [document.source_id for document in result.documents] == [
        "11111111",
        "22222222",
        resolved["markdown"],
        resolved["pdf"],
    ]
    reasons = {failure.path: failure.reason for failure in result.failures}
    assert "line 2 is not valid JSON" in reasons[resolved["corrupt"]]
    assert reasons[resolved["empty"]] == "empty file"
    assert "not UTF-8" in reasons[resolved["latin1"]]
    assert reasons[str(tmp_path / "dangling.txt")].startswith("broken symbolic link")
    assert reasons[str(missing.resolve())] == "no such file or folder"
    assert not any(".hidden" in path or ".secret" in path for path in result.files)


def test_iter_documents_streams_the_same_as_read_paths(tmp_path: Path) -> None:
    build_tree(tmp_path)
    streamed = list(iter_documents([tmp_path]))
    result = read_paths([tmp_path])
    assert [item for item in streamed if isinstance(item, Document)] == result.documents
    assert [item for item in streamed if isinstance(item, ReadFailure)] == result.failures


def test_read_paths_deduplicates_and_reports_special_files(tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("A note.", encoding="utf-8")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = read_paths([note, tmp_path, str(note), fifo])
    assert result.files == [str(note.resolve())]
    assert len(result.documents) == 1
    assert result.failures == [ReadFailure(str(fifo.resolve()), "not a regular file or folder")]


def test_read_paths_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="unknown format"):
        read_paths([tmp_path], fmt="word")
