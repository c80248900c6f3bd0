"""``medgraph eval pubmedqa``, ``eval mcq``, ``eval citations``, ``eval answers`` (on ``eval_app``).

Each shows a progress bar on standard error, can resume from its ``--save`` file, and ends with
one table (or, with ``--json``, one JSON object) on standard output. Heavy modules load inside the
commands so ``medgraph --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from medgraph.cli.app import eval_app
from medgraph.cli.options import (
    IndexOption,
    ModelOption,
    PresetOption,
    TextModelOption,
    settings_from_options,
)
from medgraph.errors import ConfigurationError

if TYPE_CHECKING:
    from medgraph.evals.report import EvalReport
    from medgraph.settings import Settings

EXIT_INTERRUPTED = 130
Item = TypeVar("Item")

LimitOption = typer.Option(None, "--limit", help="Evaluate only the first N items of the file.")
MaxTokensOption = typer.Option(
    None, "--max-tokens", help="Token budget of each model reply (default models.max_new_tokens)."
)
JsonOption = typer.Option(False, "--json", help="Print one JSON object instead of the table.")
SaveOption = typer.Option(
    None,
    "--save",
    help="JSON lines, one record per item; run again with the same file to resume.",
)


def _settings(
    model: str | None,
    text_model: str | None,
    index: str | None,
    max_tokens: int | None,
    preset: str | None,
) -> Settings:
    settings = settings_from_options(model=model, text_model=text_model, index=index, preset=preset)
    if max_tokens is not None:
        if max_tokens < 1:
            raise ConfigurationError(f"--max-tokens must be a positive number, got {max_tokens}")
        settings.models = settings.models.model_copy(update={"max_new_tokens": max_tokens})
    return settings


def _limited(items: list[Item], limit: int | None) -> list[Item]:
    if limit is None:
        return items
    if limit < 1:
        raise ConfigurationError(f"--limit must be a positive number of items, got {limit}")
    return items[:limit]


def _interrupted(save: Path | None) -> typer.Exit:
    if save is not None:
        typer.echo(
            f"medgraph: evaluation interrupted; finished items are saved in {save}. Run the same "
            "command again to resume.",
            err=True,
        )
    else:
        typer.echo(
            "medgraph: evaluation interrupted; nothing was saved (pass --save PATH to be able to "
            "resume).",
            err=True,
        )
    return typer.Exit(EXIT_INTERRUPTED)


def _finish(report: EvalReport, as_json: bool) -> None:
    if as_json:
        typer.echo(report.to_json())
    else:
        report.print_table(sys.stdout)


def _run_answers(
    task: str,
    questions: Path,
    items: list[Any],
    no_retrieval: bool,
    settings: Settings,
    save: Path | None,
) -> EvalReport:
    """Shared body of ``eval pubmedqa`` and ``eval mcq``."""
    from medgraph.evals.answering import close_parts, conditions_for, evaluation_parts

    conditions = conditions_for(no_retrieval)
    parts = evaluation_parts(
        settings,
        retrieval="retrieval" in conditions,
        task="decide yes/no/maybe" if task == "pubmedqa" else "choose an option",
    )
    try:
        if task == "pubmedqa":
            from medgraph.evals.pubmedqa import evaluate_pubmedqa

            return evaluate_pubmedqa(parts, items, conditions, source=questions.name, save=save)
        from medgraph.evals.mcq import evaluate_mcq

        return evaluate_mcq(parts, items, conditions, source=questions.name, save=save)
    except KeyboardInterrupt:
        raise _interrupted(save) from None
    finally:
        close_parts(parts)


@eval_app.command("pubmedqa")
def eval_pubmedqa(
    questions: Path = typer.Option(
        ...,
        "--questions",
        help="JSON lines with 'question', 'final_decision' (yes/no/maybe) and 'pmid'.",
        show_default=False,
    ),
    limit: int | None = LimitOption,
    no_retrieval: bool = typer.Option(
        False, "--no-retrieval", help="Only the closed-book condition (the question alone)."
    ),
    model: str | None = ModelOption,
    text_model: str | None = TextModelOption,
    preset: str | None = PresetOption,
    index: str | None = IndexOption,
    max_tokens: int | None = MaxTokensOption,
    as_json: bool = JsonOption,
    save: Path | None = SaveOption,
) -> None:
    """PubMedQA yes/no/maybe: accuracy and macro-F1 with and without retrieval.

    Also reports how much of each retrieval-grounded answer its cited passages support. The
    extractive engine cannot decide yes/no/maybe and is refused.
    """
    from medgraph.evals.records import read_pubmedqa

    items = _limited(read_pubmedqa(questions), limit)
    settings = _settings(model, text_model, index, max_tokens, preset)
    _finish(_run_answers("pubmedqa", questions, items, no_retrieval, settings, save), as_json)


@eval_app.command("mcq")
def eval_mcq(
    questions: Path = typer.Option(
        ...,
        "--questions",
        help="JSON lines with 'question', 'options' (letter -> text) and 'answer_idx'.",
        show_default=False,
    ),
    limit: int | None = LimitOption,
    no_retrieval: bool = typer.Option(
        False, "--no-retrieval", help="Only the closed-book condition (the question alone)."
    ),
    model: str | None = ModelOption,
    text_model: str | None = TextModelOption,
    preset: str | None = PresetOption,
    index: str | None = IndexOption,
    max_tokens: int | None = MaxTokensOption,
    as_json: bool = JsonOption,
    save: Path | None = SaveOption,
) -> None:
    """MedQA-style multiple choice: accuracy with and without retrieval (as MIRAGE compares).

    The option letter is constrained to the question's letters.
    """
    from medgraph.evals.records import read_mcq

    items = _limited(read_mcq(questions), limit)
    settings = _settings(model, text_model, index, max_tokens, preset)
    _finish(_run_answers("mcq", questions, items, no_retrieval, settings, save), as_json)


@eval_app.command("citations")
def eval_citations(
    answers: Path = typer.Option(
        ...,
        "--answers",
        help="JSON lines of cited answers: `medgraph ask --json` output or `eval pubmedqa --save`.",
        show_default=False,
    ),
    judge: str | None = typer.Option(
        None, "--judge", help="model or nli (default: nli with --nli-model, else model)."
    ),
    nli_model: str | None = typer.Option(
        None, "--nli-model", help="A sentence-transformers cross-encoder NLI model (id or folder)."
    ),
    limit: int | None = LimitOption,
    model: str | None = ModelOption,
    text_model: str | None = TextModelOption,
    preset: str | None = PresetOption,
    max_tokens: int | None = MaxTokensOption,
    as_json: bool = JsonOption,
    save: Path | None = SaveOption,
) -> None:
    """ALCE-style citation recall and precision of cited answers.

    Recall: the cited passages together support each claim. Precision: each citation is needed.
    Judged by the text model (constrained yes/no) or an NLI cross-encoder (--nli-model).
    """
    from medgraph.evals.answering import ExtractiveEngineError
    from medgraph.evals.citations import ModelJudge, NLIJudge, SupportJudge, evaluate_citations
    from medgraph.evals.records import read_answers

    if judge is not None and judge not in ("model", "nli"):
        raise ConfigurationError(f"--judge {judge!r} is not one of model, nli")
    chosen = judge or ("nli" if nli_model else "model")
    if chosen == "nli" and not nli_model:
        raise ConfigurationError(
            "--judge nli needs --nli-model NAME_OR_PATH (a sentence-transformers NLI cross-encoder)"
        )
    items = _limited(read_answers(answers), limit)
    grader: SupportJudge
    if chosen == "nli":
        assert nli_model is not None
        grader = NLIJudge(nli_model)
    else:
        settings = _settings(model, text_model, None, max_tokens, preset)
        if settings.models.engine == "extractive":
            raise ExtractiveEngineError(
                "no citation judge: the extractive engine (--model none) has no language model. "
                "Pass --nli-model NAME_OR_PATH (a sentence-transformers NLI cross-encoder) or a "
                "MedGemma checkpoint with --model"
            )
        from medgraph.agents.chat_model import MedGemmaChat

        chat = MedGemmaChat.from_settings(settings.models, "text")
        grader = ModelJudge(chat, f"{chat.engine}:{chat.model}")
    try:
        report = evaluate_citations(items, grader, source=answers.name, save=save)
    except KeyboardInterrupt:
        raise _interrupted(save) from None
    _finish(report, as_json)


@eval_app.command("answers")
def eval_answers(
    questions: Path = typer.Option(
        ...,
        "--questions",
        help="JSON lines with 'question'; optional 'pmid' (gold record) and 'long_answer'.",
        show_default=False,
    ),
    limit: int | None = LimitOption,
    model: str | None = ModelOption,
    text_model: str | None = TextModelOption,
    index: str | None = IndexOption,
    max_tokens: int | None = MaxTokensOption,
    preset: str | None = PresetOption,
    as_json: bool = JsonOption,
    save: Path | None = SaveOption,
) -> None:
    """Grounded answers: cited sentences citing the gold record, answers citing it, relevant and
    supported fractions, and ROUGE-L against the long answer. Works with every engine."""
    from medgraph.evals.answering import close_parts
    from medgraph.evals.answers import evaluate_answers, read_open_questions
    from medgraph.graphs.assistant import context_from_settings

    items = _limited(read_open_questions(questions), limit)
    settings = _settings(model, text_model, index, max_tokens, preset)
    parts = context_from_settings(settings)
    try:
        report = evaluate_answers(parts, items, source=questions.name, save=save)
    except KeyboardInterrupt:
        raise _interrupted(save) from None
    finally:
        close_parts(parts)
    _finish(report, as_json)


__all__ = ["eval_answers", "eval_citations", "eval_mcq", "eval_pubmedqa"]
