"""The web chat page without a browser: escaping, citation rendering, progress labels, the chat
function's streaming and threads, and the page mounted on a FastAPI app."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from markdown_it import MarkdownIt

from medgraph.assistant import EmptyQuestionError
from medgraph.graphs.safety import NOT_FOR_CLINICAL_USE
from medgraph.graphs.state import Answer
from medgraph.knowledge.citations import (
    Citation,
    CitedPassage,
    QuarantinedPassage,
    ScrubbedSentence,
    SentenceCheck,
    Verification,
)
from medgraph.server.web import (
    TurnView,
    UploadLimits,
    chat_responder,
    mount_chat_ui,
    new_thread_id,
)
from medgraph.server.web_format import (
    citation_url,
    escape_markdown,
    node_labels,
    progress_label,
    render_answer,
    render_answer_text,
    render_citations,
    safe_url,
)
from tests.server.web_support import sample_image
from tests.support import shared_data_dir

HOSTILE = [
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "[click me](javascript:alert(1))",
    "![tracker](http://evil.example/pixel.png)",
    "**bold** _em_ `code` # heading",
    "1. not a list\n- nor this\n> nor a quote",
    "$x^2$ and $$y$$ and &amp; &lt;b&gt;",
    "<details open><summary>x</summary></details>",
    "text](http://evil.example) [more",
    "www.evil.example and https://evil.example/a?b=(c)",
]


class Page(HTMLParser):
    """Tags, attributes and text of rendered HTML."""

    def __init__(self, html_text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html_text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def names(self) -> set[str]:
        return {tag for tag, _ in self.tags}

    def hrefs(self) -> list[str]:
        return [str(attrs.get("href")) for tag, attrs in self.tags if tag == "a"]


def markdown_html(text: str) -> str:
    """Markdown to HTML as a CommonMark renderer with raw HTML enabled would show it."""
    return MarkdownIt("commonmark", {"html": True}).render(text)


def citation(n: int, **fields: Any) -> Citation:
    values: dict[str, Any] = {
        "n": n,
        "source_id": f"{20000000 + n}",
        "title": f"Trial {n}",
        "year": 2020,
        "url": f"https://pubmed.ncbi.nlm.nih.gov/{20000000 + n}/",
        "reference": f"[{n}] Trial {n}. 2020. PMID:{20000000 + n}",
        "quote": f"Quoted sentence number {n}.",
        "start": 0,
        "end": 10,
        "chunk_id": f"c{n}",
    }
    values.update(fields)
    return Citation(**values)


def answer(text: str, citations: Sequence[Citation], **fields: Any) -> Answer:
    return Answer(
        question="q",
        text=text,
        citations=list(citations),
        engine="extractive",
        notice=NOT_FOR_CLINICAL_USE,
        **fields,
    )


# -- escaping -------------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE)
def test_escaped_text_renders_as_the_same_literal_text(hostile: str) -> None:
    page = Page(markdown_html(escape_markdown(hostile)))
    assert page.names() <= {"p", "br"}, page.tags
    assert " ".join("".join(page.text).split()) == " ".join(hostile.split())


def test_citations_render_literature_text_as_text_and_link_only_http_urls() -> None:
    hostile_title = "<img src=x onerror=alert(1)> [x](javascript:alert(1))"
    hostile_quote = "</blockquote></details><script>alert(2)</script>\n\n**not bold**"
    items = [
        citation(
            1,
            reference=f"[1] {hostile_title}. 2020. PMID:123",
            quote=hostile_quote,
            url="https://pubmed.ncbi.nlm.nih.gov/123/",
            source_id='123" onmouseover="x',
        ),
        citation(2, url="javascript:alert(3)", reference="[2] Evil link. 2021. doi:10/x"),
    ]
    rendered = markdown_html(render_citations(items))
    page = Page(rendered)
    assert page.names() <= {"ol", "li", "a", "details", "summary", "blockquote"}
    assert page.hrefs() == ["https://pubmed.ncbi.nlm.nih.gov/123/"]
    text = "".join(page.text)
    assert hostile_title in text
    assert " ".join(hostile_quote.split()) in text
    assert "onmouseover" not in [name for _, attrs in page.tags for name in attrs]


def test_citation_list_is_numbered_with_pubmed_links_and_quotes_on_demand() -> None:
    items = [citation(2), citation(1)]
    page = Page(markdown_html(render_citations(items)))
    values = [attrs.get("value") for tag, attrs in page.tags if tag == "li"]
    assert values == ["1", "2"]
    assert page.hrefs() == [
        "https://pubmed.ncbi.nlm.nih.gov/20000001/",
        "https://pubmed.ncbi.nlm.nih.gov/20000002/",
    ]
    assert [tag for tag, _ in page.tags].count("details") == 2
    assert all("open" not in attrs for tag, attrs in page.tags if tag == "details")
    text = "".join(page.text)
    assert "Quoted sentence number 1." in text and "Quoted sentence number 2." in text
    assert render_citations([]) == ""


def test_quote_fold_shows_every_cited_passage_of_the_record() -> None:
    hostile = "<script>alert(3)</script> **second passage**"
    passages = [
        CitedPassage(chunk_id="c1", quote="Quoted sentence number 1.", start=0, end=25),
        CitedPassage(chunk_id="c1b", quote=hostile, start=300, end=344),
    ]
    page = Page(markdown_html(render_citations([citation(1, passages=passages), citation(2)])))
    assert [tag for tag, _ in page.tags].count("li") == 2
    assert [tag for tag, _ in page.tags].count("details") == 2
    assert [tag for tag, _ in page.tags].count("blockquote") == 3
    assert "script" not in page.names() and "strong" not in page.names()
    text = "".join(page.text)
    # one summary per record: plural for the two-passage record, singular for the other
    assert text.count("Quoted passages (2)") == 1 and text.count("Quoted passage") == 2
    first, second = text.index("Quoted sentence number 1."), text.index(hostile)
    assert first < second < text.index("Quoted sentence number 2.")


def test_citation_without_url_links_pubmed_only_for_a_pmid() -> None:
    with_pmid = citation(1, url=None, reference="[1] A trial. 2020. PMID:31415926")
    without = citation(2, url=None, reference="[2] A report. local-file.pdf")
    assert citation_url(with_pmid) == "https://pubmed.ncbi.nlm.nih.gov/31415926/"
    assert citation_url(without) is None
    assert safe_url("ftp://example.org/x") is None
    assert safe_url("https://doi.org/10.1000/a b(c)") == "https://doi.org/10.1000/a%20b%28c%29"


def test_answer_markers_link_to_their_records_and_the_text_is_escaped() -> None:
    text = "Metformin <b>lowers</b> glucose [1]. It is *cheap* [1, 2]. Unknown [7]."
    rendered = markdown_html(render_answer_text(text, [citation(1), citation(2)]))
    page = Page(rendered)
    assert page.names() <= {"p", "a"}
    assert page.hrefs() == [
        "https://pubmed.ncbi.nlm.nih.gov/20000001/",
        "https://pubmed.ncbi.nlm.nih.gov/20000001/",
        "https://pubmed.ncbi.nlm.nih.gov/20000002/",
    ]
    shown = "".join(page.text)
    assert "Metformin <b>lowers</b> glucose [1]." in shown
    assert "It is *cheap* [1][2]." in shown
    assert "Unknown [7]." in shown


def test_full_answer_shows_references_verification_and_the_notice() -> None:
    check = SentenceCheck(sentence="Finding.", citations=[1], supported=True, score=0.9, method="x")
    checked = Verification(
        sentences=[check],
        supported_fraction=0.75,
        relevant_fraction=0.5,
        removed=["dropped."],
        scrubbed=[ScrubbedSentence(sentence="Finding.", removed=["PMID 99999999"])],
        quarantined=[
            QuarantinedPassage(source_id="9", chunk_id=chunk, reason="instructions")
            for chunk in ("c1", "c2")
        ],
    )
    reply = answer("Finding [1].", [citation(1)], verification=checked)
    rendered = render_answer(reply)
    page = Page(markdown_html(rendered))
    text = " ".join("".join(page.text).split())
    assert "References" in text
    assert (
        "Verification: 75% of sentences supported, 50% on the question; 1 unsupported or "
        "off-topic sentence(s) removed; identifiers the answer does not cite removed from 1 "
        "sentence(s); 1 record(s) quarantined for instructions"
    ) in text
    assert "99999999" not in text
    assert " ".join(NOT_FOR_CLINICAL_USE.split()) in text
    assert page.hrefs().count("https://pubmed.ncbi.nlm.nih.gov/20000001/") == 2


# -- progress -------------------------------------------------------------------------------------


def test_progress_labels_name_each_step() -> None:
    assert progress_label({"event": "read_image", "image_id": "img-1"}) == "Reading image img-1"
    assert progress_label({"event": "retrieve", "query": "aspirin  stroke"}) == (
        "Searching the literature for “aspirin stroke”"
    )
    assert progress_label({"event": "retrieved", "query": "q", "hits": 6}) == "Found 6 passages"
    assert progress_label(
        {"event": "tool", "name": "search_literature", "args": {"query": "statins"}}
    ) == ("Searching the literature (tool) for “statins”")
    assert progress_label({"event": "tool", "name": "bmi", "args": {}}) == "Calling tool bmi"
    assert progress_label({"event": "write", "sentences": 3}) == "Writing the answer (3 sentences)"
    assert progress_label(
        {"event": "verify", "supported_fraction": 0.5, "relevant_fraction": 0.25, "removed": 2}
    ) == (
        "Verifying the citations: 50% supported, 25% on the question, 2 unsupported or "
        "off-topic removed"
    )
    assert "emergency" in progress_label({"event": "triage", "emergency": True})
    long_query = progress_label({"event": "retrieve", "query": "x" * 500})
    assert len(long_query) < 200 and long_query.endswith("…”")
    assert node_labels({"reason": {}, "tools": {}}) == ["Reasoning over the evidence"]
    assert node_labels(None) == []


# -- the chat function ----------------------------------------------------------------------------


class FakeStreamer:
    """Yields scripted stream items; records each call."""

    def __init__(self, items: Sequence[tuple[str, Any]], error: Exception | None = None) -> None:
        self.items = list(items)
        self.error = error
        self.calls: list[tuple[str, list[Path], str]] = []

    async def stream(
        self, question: str, images: list[Path], thread_id: str
    ) -> AsyncIterator[tuple[str, Any]]:
        self.calls.append((question, list(images), thread_id))
        for item in self.items:
            await asyncio.sleep(0)
            yield item
        if self.error is not None:
            raise self.error


def run_turn(
    streamer: FakeStreamer,
    message: dict[str, Any],
    thread: str | None = None,
    limits: UploadLimits | None = None,
) -> list[tuple[list[Any], str]]:
    respond = chat_responder(streamer, limits or UploadLimits())

    async def collect() -> list[tuple[list[Any], str]]:
        return [item async for item in respond(message, [], thread)]

    return asyncio.run(collect())


SCRIPT: list[tuple[str, Any]] = [
    ("updates", {"triage": {"route": ["triage"]}}),
    ("custom", {"event": "triage", "emergency": False}),
    ("custom", {"event": "retrieve", "query": "aspirin"}),
    ("custom", {"event": "retrieved", "query": "aspirin", "hits": 4}),
    ("custom", {"event": "write", "sentences": 1}),
    ("custom", {"event": "verify", "supported_fraction": 1.0, "removed": 0}),
    ("answer", answer("Aspirin helps [1].", [citation(1)])),
]


def test_turn_streams_progress_before_the_answer_and_keeps_one_thread() -> None:
    streamer = FakeStreamer(SCRIPT)
    yields = run_turn(streamer, {"text": " Does aspirin help? ", "files": []})
    threads = {thread for _, thread in yields}
    assert len(threads) == 1
    (thread,) = threads
    assert thread.startswith("web:")
    assert streamer.calls == [("Does aspirin help?", [], thread)]
    # Several redraws while working, each with the step list and no answer yet.
    working = [messages for messages, _ in yields[:-1]]
    assert len(working) >= 5
    for messages in working[:-1]:
        assert len(messages) == 1 and messages[0].metadata["status"] == "pending"
    assert "Searching the literature for" in working[3][0].content
    final, _ = yields[-1]
    steps, reply = final
    assert steps.metadata["status"] == "done" and steps.metadata["title"].startswith("Steps")
    assert "pubmed.ncbi.nlm.nih.gov/20000001" in reply.content
    # The next turn of this session continues its thread; a new session gets another.
    again = FakeStreamer(SCRIPT)
    run_turn(again, {"text": "And for stroke?", "files": []}, thread=thread)
    assert again.calls[0][2] == thread
    assert new_thread_id() != new_thread_id()


def test_model_tokens_show_as_an_unverified_draft_until_the_answer() -> None:
    class Chunk:
        def __init__(self, text: str) -> None:
            self.text = text

    items: list[tuple[str, Any]] = [
        ("messages", (Chunk("Aspirin "), {"langgraph_node": "reason"})),
        ("messages", (Chunk("<b>helps</b>"), {"langgraph_node": "reason"})),
        ("messages", (Chunk("yes"), {"langgraph_node": "verify"})),
        ("answer", answer("Aspirin helps [1].", [citation(1)])),
    ]
    yields = run_turn(FakeStreamer(items), {"text": "q", "files": []})
    drafts = [messages[1] for messages, _ in yields if len(messages) > 1 and messages[1].metadata]
    assert drafts and drafts[-1].metadata["title"] == "Draft (not yet verified)"
    assert Page(markdown_html(drafts[-1].content)).names() <= {"p"}
    assert "yes" not in drafts[-1].content
    final = yields[-1][0]
    assert len(final) == 2 and not final[1].metadata


def test_errors_show_in_the_chat_instead_of_an_answer() -> None:
    failing = FakeStreamer(SCRIPT[:2], error=EmptyQuestionError("the question is <empty>"))
    final = run_turn(failing, {"text": "", "files": []})[-1][0]
    assert final[0].metadata["status"] == "done"
    assert "Could not answer" in final[-1].content
    assert "<empty>" not in final[-1].content and "&lt;empty&gt;" in final[-1].content

    crashed = FakeStreamer([], error=RuntimeError("secret internal detail"))
    final = run_turn(crashed, {"text": "q", "files": []})[-1][0]
    assert "server failed" in final[-1].content
    assert "secret internal detail" not in final[-1].content


def test_uploads_are_checked_before_the_assistant_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    uploads.mkdir()
    image = Path(shutil.copy(sample_image(), uploads))
    dicom = Path(
        shutil.copy(shared_data_dir() / "images" / "dicom" / "encapsulated_cxr.dcm", uploads)
    )
    ok = FakeStreamer(SCRIPT)
    run_turn(ok, {"text": "q", "files": [{"path": str(image)}, str(dicom)]})
    assert ok.calls[0][1] == [image, dicom]

    elsewhere = FakeStreamer(SCRIPT)
    final = run_turn(elsewhere, {"text": "q", "files": [str(sample_image())]})[-1][0]
    assert elsewhere.calls == [] and "not uploaded through this page" in final[-1].content
    assert str(sample_image().parent) not in final[-1].content

    too_many = FakeStreamer(SCRIPT)
    final = run_turn(
        too_many, {"text": "q", "files": [str(image)] * 3}, limits=UploadLimits(max_images=2)
    )[-1][0]
    assert too_many.calls == [] and "at most 2" in final[-1].content

    too_big = FakeStreamer(SCRIPT)
    final = run_turn(
        too_big, {"text": "q", "files": [str(image)]}, limits=UploadLimits(max_image_pixels=100)
    )[-1][0]
    assert too_big.calls == [] and "Could not answer" in final[-1].content

    broken = uploads / "scan.png"
    broken.write_bytes(b"not an image at all")
    unreadable = FakeStreamer(SCRIPT)
    final = run_turn(unreadable, {"text": "q", "files": [str(broken)]})[-1][0]
    assert unreadable.calls == [] and "Could not answer" in final[-1].content


def test_turn_view_without_answer_or_error_still_closes() -> None:
    view = TurnView()
    assert view.messages()[0].metadata["status"] == "pending"
    view.finish()
    assert view.messages()[0].metadata["status"] == "done"


# -- mounting -------------------------------------------------------------------------------------


def test_mount_serves_the_gradio_page_at_the_root() -> None:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    mount_chat_ui(app, FakeStreamer(SCRIPT))
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert "gradio" in page.text.lower()
        config = client.get("/config").json()
        assert config["title"] == "medgraph chat"
        ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
        assert {"medgraph-notice", "medgraph-chat", "medgraph-input"} <= ids
        (textbox,) = [c for c in config["components"] if c["type"] == "multimodaltextbox"]
        assert {".png", ".jpg", ".jpeg", ".dcm"} <= set(textbox["props"]["file_types"])
        (notice,) = [
            c
            for c in config["components"]
            if c.get("props", {}).get("elem_id") == "medgraph-notice"
        ]
        assert "not intended to directly inform clinical" in notice["props"]["value"]
        assert client.get("/ping").json() == {"pong": "yes"}


def test_create_app_serves_the_page_beside_the_api(tmp_path: Path) -> None:
    create_app = pytest.importorskip("medgraph.server.app").create_app
    from medgraph.assistant import Assistant
    from tests.graphs.support import KeywordIndex, corpus_documents
    from tests.server.web_support import extractive_settings

    settings = extractive_settings(tmp_path / "home")
    with (
        Assistant(settings, index=KeywordIndex(corpus_documents(5))) as assistant,
        TestClient(create_app(settings, assistant=assistant)) as client,
    ):
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        health = client.get("/v1/health")
        assert health.status_code == 200 and health.json()["engine"] == "extractive"
