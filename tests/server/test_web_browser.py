"""The web chat page in a real browser: Debian's chromium driven by chromedriver through selenium.

The server runs the extractive assistant over a real literature index of 40 PubMedQA abstracts.
The test uploads a chest radiograph from the shared data, asks a question whose abstract is
indexed, watches the progress stream in before the answer, checks the PubMed citation links, opens
a quoted passage, checks the not-for-clinical-use notice and saves a screenshot
(``test-artifacts/web-chat.png``, or under ``$MEDGRAPH_TEST_ARTIFACTS``). A second tab must get
a conversation thread of its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from medgraph.assistant import Assistant
from tests.server.api_support import running
from tests.server.web_support import (
    build_app,
    build_small_index,
    extractive_settings,
    pubmed_links,
    question_for,
    sample_image,
)
from tests.support import REPO_ROOT

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 60

# Records when the chat first shows progress and when it first shows a PubMed link, so the test
# can tell that progress streamed in before the answer (not all at once at the end).
RECORD_STREAM_JS = """
window.__medgraphSeen = {progress: null, link: null};
const chat = document.getElementById('medgraph-chat');
const look = () => {
  const seen = window.__medgraphSeen;
  const now = performance.now();
  if (seen.progress === null && /Searching the literature|Starting/.test(chat.innerText)) {
    seen.progress = now;
  }
  if (seen.link === null && chat.querySelector('a[href*="pubmed.ncbi.nlm.nih.gov"]')) {
    seen.link = now;
  }
};
new MutationObserver(look).observe(chat, {subtree: true, childList: true, characterData: true});
"""


def _binary(path: str, name: str) -> str | None:
    return path if Path(path).exists() else shutil.which(name)


@pytest.fixture(scope="module")
def browser_binaries() -> tuple[str, str]:
    """Paths of chromium and chromedriver; skip without them (fail under CI=true)."""
    return find_browser()


def find_browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver; skip without them (fail under CI=true)."""
    chromium = _binary(CHROMIUM, "chromium")
    driver = _binary(CHROMEDRIVER, "chromedriver")
    if chromium and driver:
        return chromium, driver
    message = (
        "chromium and chromedriver are needed for the browser test; "
        "the test set-up installs them: scripts/install-system-test-deps.sh"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class ChatServer:
    base_url: str
    assistant: Assistant
    pmids: set[str]
    abstracts: dict[str, str]


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    """The app (create_app, or the page on a bare app) served by uvicorn on a free port."""
    from tests.knowledge.index_support import corpus_records

    root = tmp_path_factory.mktemp("web-chat")
    index, pmids = build_small_index(root)
    abstracts = {
        str(r["pmid"]): " ".join(s["text"] for s in r["sections"])
        for r in corpus_records(len(pmids))
    }
    assistant = Assistant(extractive_settings(root / "home"), index=index)
    try:
        app, _ = build_app(assistant)
        with running(app) as base_url:
            yield ChatServer(base_url, assistant, pmids, abstracts)
    finally:
        assistant.close()


@pytest.fixture
def driver(browser_binaries: tuple[str, str], tmp_path: Path) -> Iterator[Any]:
    """A headless chromium session, always quit afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_binaries
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1500",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    browser.set_page_load_timeout(WAIT_S)
    try:
        yield browser
    finally:
        browser.quit()


def artifact_path(name: str) -> Path:
    folder = Path(os.environ.get("MEDGRAPH_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def open_chat(browser: Any, base_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(base_url + "/")
    WebDriverWait(browser, WAIT_S).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "#medgraph-input textarea")
    )


def ask(browser: Any, question: str, image: Path | None = None) -> None:
    """Attach ``image`` (waiting for its upload to finish), type ``question`` and send it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    if image is not None:
        upload = browser.find_element(By.CSS_SELECTOR, "#medgraph-input input[type=file]")
        upload.send_keys(str(image))
        WebDriverWait(browser, WAIT_S).until(
            lambda b: any(
                image.name in (img.get_attribute("src") or "")
                for img in b.find_elements(By.CSS_SELECTOR, "#medgraph-input img")
            )
        )
    box = browser.find_element(By.CSS_SELECTOR, "#medgraph-input textarea")
    box.send_keys(question)
    box.send_keys(Keys.ENTER)


def wait_for_citations(browser: Any, turns: int = 1) -> list[str]:
    """Wait until ``turns`` answers carry their reference lists; the PubMed hrefs of the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT_S).until(
        lambda b: (
            len(b.find_elements(By.CSS_SELECTOR, "#medgraph-chat ol.medgraph-citations")) >= turns
        )
    )
    links = browser.find_elements(
        By.CSS_SELECTOR, '#medgraph-chat a[href*="pubmed.ncbi.nlm.nih.gov"]'
    )
    return [link.get_attribute("href") or "" for link in links]


def thread_ids(assistant: Assistant) -> set[str]:
    """The conversation threads the assistant's checkpointer holds."""
    return {
        str(item.config["configurable"]["thread_id"]) for item in assistant.checkpointer.list(None)
    }


def test_chat_page_streams_a_cited_answer_about_an_uploaded_image(
    driver: Any, chat_server: ChatServer
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    item = question_for(chat_server.pmids)
    image = sample_image()
    threads_before = thread_ids(chat_server.assistant)

    open_chat(driver, chat_server.base_url)
    driver.execute_script(RECORD_STREAM_JS)
    ask(driver, item["question"], image)
    hrefs = wait_for_citations(driver)

    chat = driver.find_element(By.ID, "medgraph-chat")
    text = chat.text
    # The question and the uploaded image are in the conversation.
    assert item["question"] in text
    assert any(
        image.name in (i.get_attribute("src") or "") for i in chat.find_elements(By.TAG_NAME, "img")
    )
    # Live progress came first, then the answer.
    seen = driver.execute_script("return window.__medgraphSeen")
    assert seen["progress"] is not None and seen["link"] is not None, seen
    assert seen["progress"] < seen["link"], seen
    assert "Searching the literature" in driver.page_source
    # The streamed answer text and its numbered references with PubMed links to indexed records.
    assert "Extractive answer" in text
    cited = pubmed_links(hrefs)
    assert cited, hrefs
    assert cited <= chat_server.pmids
    assert str(item["pmid"]) in cited  # the abstract that answers the question
    references = chat.find_elements(By.CSS_SELECTOR, "ol.medgraph-citations > li")
    assert references and all(r.is_displayed() for r in references)
    # The quoted passage opens on demand and is text of the cited record.
    first = references[0]
    pmid = next(iter(pubmed_links([first.find_element(By.TAG_NAME, "a").get_attribute("href")])))
    passage = first.find_element(By.CSS_SELECTOR, "details blockquote")
    assert not passage.is_displayed()
    first.find_element(By.TAG_NAME, "summary").click()
    WebDriverWait(driver, WAIT_S).until(lambda _: passage.is_displayed())
    quote = " ".join(passage.text.split())
    assert len(quote) > 20
    assert quote in " ".join(chat_server.abstracts[pmid].split())
    # The not-for-clinical-use notice is on screen.
    notice = driver.find_element(By.ID, "medgraph-notice")
    assert notice.is_displayed()
    assert "not intended to directly inform clinical diagnosis" in notice.text
    in_view = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return r.top >= 0 && r.bottom <= window.innerHeight;",
        notice,
    )
    assert in_view
    # The turn ran in a new thread of its own.
    assert len(thread_ids(chat_server.assistant) - threads_before) == 1

    # The finished step list folds away; opened, it names the graph's steps in order.
    (steps,) = [
        t for t in chat.find_elements(By.CSS_SELECTOR, ".thought-group .title") if "Steps" in t.text
    ]
    steps.click()
    group = steps.find_element(By.XPATH, "./..")
    WebDriverWait(driver, WAIT_S).until(lambda _: "Verifying the citations" in group.text)
    lines = group.text
    order = ["safety triage", "Searching the literature for", "Found", "Writing", "Verifying"]
    positions = [lines.index(label) for label in order]
    assert positions == sorted(positions), lines

    screenshot = artifact_path("web-chat.png")
    assert driver.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000


def test_each_tab_has_its_own_thread_and_a_tab_keeps_its_thread(
    driver: Any, chat_server: ChatServer
) -> None:
    item = question_for(chat_server.pmids)
    before = thread_ids(chat_server.assistant)

    open_chat(driver, chat_server.base_url)
    ask(driver, item["question"])
    wait_for_citations(driver)
    first_tab = thread_ids(chat_server.assistant) - before
    assert len(first_tab) == 1

    ask(driver, f"Tell me more: {item['question']}")
    wait_for_citations(driver, turns=2)
    assert thread_ids(chat_server.assistant) - before == first_tab

    driver.switch_to.new_window("tab")
    open_chat(driver, chat_server.base_url)
    ask(driver, item["question"])
    wait_for_citations(driver)
    both = thread_ids(chat_server.assistant) - before
    assert len(both) == 2 and first_tab < both

    (first,) = first_tab
    config = {"configurable": {"thread_id": first}}
    state = chat_server.assistant.graph.get_state(config).values  # type: ignore[arg-type]
    assert sum(m.type == "human" for m in state["messages"]) == 2


def test_missing_browser_skips_locally_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(f"{__name__}.CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"install-system-test-deps\.sh"):
        find_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"install-system-test-deps\.sh"):
        find_browser()
