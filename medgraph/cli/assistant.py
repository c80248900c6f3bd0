"""``medgraph ask``, ``medgraph chat`` and ``medgraph demo``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medgraph.cli.app import app
from medgraph.cli.options import (
    ImageModelOption,
    IndexOption,
    ModelOption,
    PresetOption,
    TextModelOption,
    settings_from_options,
)
from medgraph.cli.terminal import terminal_text

if TYPE_CHECKING:
    from medgraph.assistant import Assistant
    from medgraph.graphs.state import Answer


def print_clarification(answer: Answer) -> None:
    """A clarifying question (an answer of kind ``clarify``), for a terminal."""
    typer.echo(f"Clarifying question: {terminal_text(answer.text)}")


def print_answer(answer: Answer) -> None:
    """The answer, its references, verification and route, for a terminal."""
    if answer.kind == "clarify":
        print_clarification(answer)
        return
    typer.echo(terminal_text(answer.text))
    if answer.citations:
        typer.echo("\nReferences:")
        for citation in answer.citations:
            typer.echo(f"  {terminal_text(citation.reference)}")
            if citation.url:
                typer.echo(f"      {terminal_text(citation.url)}")
    for finding in answer.findings:
        typer.echo(f"\nImage {finding.scope or finding.image_id}: {terminal_text(finding.text)}")
    verification = answer.verification
    typer.echo(
        f"\nVerified: {verification.supported_fraction:.0%} of claims supported, "
        f"{verification.relevant_fraction:.0%} on the question"
        f" ({len(verification.removed)} removed). Engine: {answer.engine}. "
        f"Route: {' -> '.join(answer.route)}."
    )
    typer.echo(f"Note: {answer.notice}")


def _open(
    model: str | None,
    image_model: str | None,
    text_model: str | None,
    index: str | None,
    preset: str | None,
) -> Assistant:
    from medgraph.assistant import Assistant

    settings = settings_from_options(
        model=model, image_model=image_model, text_model=text_model, index=index, preset=preset
    )
    return Assistant(settings)


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question."),
    image: list[Path] = typer.Option(
        [],
        "--image",
        help=(
            "Attach an image (PNG, JPEG, DICOM), a folder of DICOM files (CT/MR series, views) "
            "or a zip of one study; repeat for more (two dated studies are compared)."
        ),
    ),
    index: str | None = IndexOption,
    model: str | None = ModelOption,
    image_model: str | None = ImageModelOption,
    text_model: str | None = TextModelOption,
    preset: str | None = PresetOption,
    thread: str | None = typer.Option(None, "--thread", help="Continue this conversation."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Answer a question from the indexed literature, every claim cited and verified.

    When the question is too ambiguous, a clarifying question is printed instead (JSON kind
    "clarify"); answer it with: medgraph ask "ANSWER" --thread ID.
    """
    from medgraph.assistant import Assistant, check_question

    settings = settings_from_options(
        model=model, image_model=image_model, text_model=text_model, index=index, preset=preset
    )
    # A bad question (e.g. bytes that are not UTF-8) is refused before any model loads.
    check_question(question, settings.graph.max_question_chars)
    with Assistant(settings) as assistant:
        answer = assistant.ask(question, images=image, thread_id=thread, create=thread is None)
    if as_json:
        typer.echo(json.dumps(answer.to_json_dict(), ensure_ascii=False))
    elif answer.kind == "clarify":
        print_clarification(answer)
        typer.echo(
            f'To continue, answer it: medgraph ask "YOUR ANSWER" --thread {answer.thread_id}'
        )
        typer.echo(f"Thread: {answer.thread_id}")
    else:
        print_answer(answer)
        typer.echo(f"Thread: {answer.thread_id}")


@app.command()
def chat(
    index: str | None = IndexOption,
    model: str | None = ModelOption,
    image_model: str | None = ImageModelOption,
    text_model: str | None = TextModelOption,
    preset: str | None = PresetOption,
    thread: str | None = typer.Option(None, "--thread", help="Resume this conversation."),
) -> None:
    """A conversation with memory: /image PATH attaches an image, /new starts over, /quit ends.

    When the assistant asks a clarifying question, the next line is taken as the answer.
    """
    from medgraph.assistant import ClarificationPendingError
    from medgraph.errors import MedgraphError

    with _open(model, image_model, text_model, index, preset) as assistant:
        if thread is not None and not assistant.thread_exists(thread):
            from medgraph.assistant import ThreadNotFoundError

            raise ThreadNotFoundError(f"no conversation with thread id {thread!r}")
        images: list[Path] = []
        typer.echo(f"medgraph chat ({assistant.engine}). /image PATH, /new, /quit.")
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                break
            if not line:
                continue
            if line in {"/quit", "/exit"}:
                break
            if line == "/new":
                thread, images = None, []
                typer.echo("(new conversation)")
                continue
            if line.startswith("/image"):
                path = Path(line.removeprefix("/image").strip())
                images.append(path)
                typer.echo(f"(attached {path.name} as img-{len(images)})")
                continue
            try:
                answer: Answer | None = None
                for mode, data in assistant.stream(line, images=images, thread_id=thread):
                    if mode == "custom" and isinstance(data, dict):
                        typer.echo(f"  .. {data.get('event')}", err=True)
                    elif mode == "answer":
                        answer = data
            except MedgraphError as error:
                typer.echo(f"medgraph: error: {error}", err=True)
                if isinstance(error, ClarificationPendingError):
                    images = []  # the reply goes through as text on the next line
                continue
            assert answer is not None
            print_answer(answer)
            if answer.kind == "clarify":
                typer.echo("(answer the question above to continue)")
            thread, images = answer.thread_id, []
        if thread:
            typer.echo(f"Thread: {thread} (resume with --thread {thread})")


@app.command()
def demo(
    index: str | None = IndexOption,
    question: str | None = typer.Option(None, "--question", help="Ask this instead."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Index only the first N abstracts (a quicker look)."
    ),
) -> None:
    """Index the PubMedQA literature and answer a sample question with citations."""
    from medgraph.assistant import Assistant
    from medgraph.demo import DEMO_QUESTION, find_corpus, first_records, weights_available
    from medgraph.knowledge.index import LiteratureIndex

    settings = settings_from_options(index=index)
    if index is None:
        settings.knowledge = settings.knowledge.model_copy(
            update={"index_dir": settings.home / "demo-index"}
        )
    corpus = find_corpus(settings)
    typer.echo(f"Literature: {corpus}" + (f" (the first {limit} records)" if limit else ""))
    if limit is not None:
        corpus = first_records(corpus, limit, settings.home / "demo-corpus.jsonl")
    with LiteratureIndex(settings.knowledge) as literature:
        report = literature.ingest([corpus], progress=sys.stderr.isatty())
        typer.echo(report.summary(problems=True))
    if weights_available(settings):
        typer.echo(f"Engine: MedGemma ({settings.models.text_model}) on local weights.")
    else:
        settings.models = settings.models.model_copy(update={"engine": "extractive"})
        typer.echo(
            "Engine: extractive (no MedGemma weights found on this machine; see `medgraph doctor`)."
        )
    asked = question or DEMO_QUESTION
    typer.echo(f"\nQuestion: {asked}\n")
    with Assistant(settings) as assistant:
        print_answer(assistant.ask(asked))
