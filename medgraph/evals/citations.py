"""``medgraph eval citations``: ALCE-style citation recall and precision of cited answers.

For every claim sentence of an answer (:func:`~medgraph.knowledge.verification.is_claim`; lead-ins,
hedges, notices and the extractive label are not claims), with ``P(S)`` the cited passages of the
set ``S`` joined together (Gao et al., 2023, "Enabling Large Language Models to Generate Text with
Citations", §4):

- **recall**: the sentence is supported when its cited passages together entail it. A sentence
  citing nothing, or citing a number with no passage, is unsupported.
- **precision**: a citation ``c`` of a supported sentence is *irrelevant* when ``P({c})`` alone
  does not entail the sentence and ``P(cited - {c})`` still does; every other citation of a
  supported sentence is relevant. Citations of unsupported sentences are not relevant.

Per answer, recall = supported claims / claims and precision = relevant citations / citations
(0 when the answer cites nothing); the table reports the mean over answers with at least one
claim, as ALCE does, and the JSON also gives the totals over all sentences (micro averages).

The entailment judge is the configured text model with constrained output ``{"supported": bool}``
(the assistant's judge prompt, passages fenced as untrusted data), or a sentence-transformers
cross-encoder NLI model: "supported" means its entailment label (found in the model config's
``id2label``) has the highest probability; a one-output model counts a score of 0.5 or more.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from medgraph.errors import ConfigurationError, ModelLoadError
from medgraph.evals.records import CitedAnswer
from medgraph.evals.report import Column, EvalReport, mean
from medgraph.evals.runner import Record, SaveFile, run_items
from medgraph.graphs.prompts import JUDGE_PROMPT
from medgraph.knowledge.citations import parse_cited_text, strip_markers
from medgraph.knowledge.untrusted import fence_untrusted
from medgraph.knowledge.verification import is_claim

TASK = "citations"
PASSAGE_SEPARATOR = "\n\n"
SUPPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"supported": {"type": "boolean"}},
    "required": ["supported"],
}

COLUMNS = [
    Column("answers", "answers", "{:d}"),
    Column("claims", "claims", "{:d}"),
    Column("citations", "citations", "{:d}"),
    Column("recall", "citation recall"),
    Column("precision", "citation precision"),
    Column("judge_errors", "judge errors", "{:d}"),
]


class SupportJudge(Protocol):
    """Decides entailment for ``(passages, claim)`` pairs, in order, in one batch."""

    name: str
    errors: int

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """One verdict per pair: do the passages support the claim?"""
        ...


class ModelJudge:
    """The text model asked, per pair, for constrained JSON ``{"supported": true|false}``."""

    def __init__(self, model: BaseChatModel, name: str) -> None:
        """Judge with ``model``; ``name`` identifies it in reports and save files."""
        self.model = model
        self.name = name
        self.errors = 0
        self._structured = model.with_structured_output(SUPPORT_SCHEMA)

    @staticmethod
    def _prompt(passages: str, claim: str) -> list[HumanMessage]:
        return [
            HumanMessage(
                JUDGE_PROMPT.format(claim=claim, passages=fence_untrusted("passage", passages))
            )
        ]

    def _verdict(self, reply: Any) -> bool:
        if isinstance(reply, dict) and isinstance(reply.get("supported"), bool):
            return bool(reply["supported"])
        self.errors += 1
        return False

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Verdicts in one batch; an unreadable reply counts as unsupported (and as an error)."""
        if not pairs:
            return []
        prompts = [self._prompt(passages, claim) for passages, claim in pairs]
        try:
            replies = self._structured.batch(prompts)  # type: ignore[arg-type]
        except ValueError:
            verdicts = []
            for prompt in prompts:  # find the unreadable reply; keep the others
                try:
                    verdicts.append(self._verdict(self._structured.invoke(prompt)))
                except ValueError:
                    self.errors += 1
                    verdicts.append(False)
            return verdicts
        return [self._verdict(reply) for reply in replies]


def entailment_index(id2label: dict[Any, Any], model: str) -> int:
    """The output index labelled entailment in an NLI model's ``id2label``."""
    labels = {int(index): str(label).strip().lower() for index, label in id2label.items()}
    for index, label in sorted(labels.items()):
        if label in ("entailment", "entails", "entailed"):
            return index
    for index, label in sorted(labels.items()):
        if label.startswith("entail"):
            return index
    raise ConfigurationError(
        f"NLI model {model!r} has no entailment label (its config's id2label is "
        f"{dict(sorted(labels.items()))}); give a three-way NLI cross-encoder such as "
        "cross-encoder/nli-deberta-v3-base, or a model whose config names its labels"
    )


class NLIJudge:
    """A sentence-transformers cross-encoder NLI model: premise = passages, hypothesis = claim."""

    def __init__(self, name_or_path: str, *, batch_size: int = 16) -> None:
        """Load the cross-encoder (a Hub id in the local cache, or a folder)."""
        from medgraph.knowledge.embeddings import resolve_model_source
        from medgraph.loading import MODEL_LOAD_LOCK

        try:
            with MODEL_LOAD_LOCK:
                from sentence_transformers import CrossEncoder

                self.model = CrossEncoder(resolve_model_source(name_or_path))
        except Exception as error:  # every loading failure becomes one clear message
            raise ModelLoadError(
                f"could not load NLI model {name_or_path!r}: {str(error).splitlines()[0]}; give "
                "a local folder or a Hub id in the local cache"
            ) from error
        self.name = f"nli:{name_or_path}"
        self.errors = 0
        self.batch_size = batch_size
        self.single_score = self.model.num_labels == 1
        self.entailment = (
            0 if self.single_score else entailment_index(self.model.config.id2label, name_or_path)
        )

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Entailment wins the softmax (or, for one output, scores at least 0.5)."""
        if not pairs:
            return []
        scores = self.model.predict(
            [(passages, claim) for passages, claim in pairs],
            batch_size=self.batch_size,
            apply_softmax=not self.single_score,
            show_progress_bar=False,
        )
        if self.single_score:
            return [float(score) >= 0.5 for score in scores]
        return [int(row.argmax()) == self.entailment for row in scores]


def _joined(numbers: Sequence[int], passages: dict[int, str]) -> str:
    return PASSAGE_SEPARATOR.join(passages[n] for n in numbers)


def score_answer(answer: CitedAnswer, judge: SupportJudge) -> dict[str, Any]:
    """Recall and precision details of one answer (three judge batches at most)."""
    claims = []
    for sentence in parse_cited_text(answer.text):
        text = strip_markers(sentence.text)
        if is_claim(text):
            claims.append((text, list(dict.fromkeys(sentence.citations))))
    known = answer.passages
    # recall: do all cited passages together support the sentence?
    joint_ask = [
        i for i, (_, cited) in enumerate(claims) if cited and all(n in known for n in cited)
    ]
    joint = dict.fromkeys(range(len(claims)), False)
    verdicts = judge([(_joined(claims[i][1], known), claims[i][0]) for i in joint_ask])
    joint.update(zip(joint_ask, verdicts, strict=True))
    # precision: for supported sentences with several citations, is each citation needed?
    singles = [
        (i, n) for i in joint_ask if joint[i] and len(claims[i][1]) > 1 for n in claims[i][1]
    ]
    alone = judge([(known[n], claims[i][0]) for i, n in singles])
    failing = [pair for pair, ok in zip(singles, alone, strict=True) if not ok]
    rest = judge(
        [(_joined([m for m in claims[i][1] if m != n], known), claims[i][0]) for i, n in failing]
    )
    irrelevant = {pair for pair, ok in zip(failing, rest, strict=True) if ok}
    sentences: list[dict[str, Any]] = []
    for i, (text, cited) in enumerate(claims):
        relevant = [n for n in cited if joint[i] and (i, n) not in irrelevant]
        sentences.append(
            {
                "sentence": text,
                "citations": cited,
                "missing": [n for n in cited if n not in known],
                "supported": joint[i],
                "relevant": relevant,
                "irrelevant": [n for n in cited if (i, n) in irrelevant],
            }
        )
    cited_total = sum(len(s["citations"]) for s in sentences)
    relevant_total = sum(len(s["relevant"]) for s in sentences)
    supported_total = sum(bool(s["supported"]) for s in sentences)
    return {
        "claims": len(sentences),
        "supported": supported_total,
        "citations": cited_total,
        "relevant": relevant_total,
        "recall": supported_total / len(sentences) if sentences else None,
        "precision": (relevant_total / cited_total if cited_total else 0.0) if sentences else None,
        "sentences": sentences,
    }


def summarise(records: Sequence[Record], judge_name: str) -> dict[str, Any]:
    """One row for the judge: ALCE means over answers with claims, and micro totals."""
    scored = [r for r in records if r.get("claims")]
    claims = sum(int(r["claims"]) for r in scored)
    citations = sum(int(r["citations"]) for r in scored)
    return {
        judge_name: {
            "answers": len(scored),
            "answers_without_claims": len(records) - len(scored),
            "claims": claims,
            "citations": citations,
            "recall": mean([float(r["recall"]) for r in scored]),
            "precision": mean([float(r["precision"]) for r in scored]),
            "micro_recall": sum(int(r["supported"]) for r in scored) / claims if claims else None,
            "micro_precision": (
                sum(int(r["relevant"]) for r in scored) / citations if citations else None
            ),
            "judge_errors": sum(int(r.get("judge_errors", 0)) for r in records),
        }
    }


def evaluate_citations(
    answers: Sequence[CitedAnswer],
    judge: SupportJudge,
    *,
    source: str = "",
    save: Path | None = None,
    progress: bool = True,
) -> EvalReport:
    """Score (or resume scoring from ``save``) the citations of every answer."""
    saved = SaveFile(save, TASK, judge.name) if save is not None else None

    def work(answer: CitedAnswer, previous: Record | None) -> Record:
        errors = judge.errors
        scores = score_answer(answer, judge)
        return {
            "task": TASK,
            "id": answer.id,
            "engine": judge.name,
            **scores,
            "judge_errors": judge.errors - errors,
        }

    result = run_items(
        answers,
        work,
        item_id=lambda answer: answer.id,
        is_complete=lambda record: True,
        save=saved,
        description="citations",
        progress=progress,
    )
    return EvalReport(
        task=TASK,
        source=source,
        engine=judge.name,
        items=len(answers),
        resumed=result.resumed,
        columns=COLUMNS,
        rows=summarise(result.records, judge.name),
        save=str(save) if save is not None else None,
    )


__all__ = [
    "SUPPORT_SCHEMA",
    "ModelJudge",
    "NLIJudge",
    "SupportJudge",
    "entailment_index",
    "evaluate_citations",
    "score_answer",
    "summarise",
]
