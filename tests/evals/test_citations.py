"""``medgraph eval citations``: ALCE recall/precision logic, NLI and model judges, the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from medgraph.evals.citations import evaluate_citations, score_answer
from medgraph.evals.records import CitedAnswer
from tests.evals.support import (
    build_nli_model,
    dev_lines,
    one_error_line,
    read_jsonl,
    run_cli,
    write_lines,
)

NLI_LABELS = {0: "contradiction", 1: "entailment", 2: "neutral"}


class KeywordJudge:
    """Supported when every word of the claim in ALL CAPS appears in the passages; counts calls."""

    name = "keyword"
    errors = 0

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        self.pairs.extend(pairs)
        return [
            all(word in passages.split() for word in claim.split() if word.isupper())
            for passages, claim in pairs
        ]


def test_alce_recall_and_precision_by_hand() -> None:
    answer = CitedAnswer(
        id="a",
        text=(
            "Aspirin reduces STROKE risk in older adults [1][2]. "
            "Statins lower cholesterol and PLAQUE volume [1][3]. "
            "Metformin improves INSULIN sensitivity in adults [4]. "
            "Exercise improves mood in adults."
        ),
        passages={1: "STROKE fell", 2: "unrelated text", 3: "PLAQUE shrank"},
    )
    judge = KeywordJudge()
    scores = score_answer(answer, judge)
    # s1 cites [1][2]: supported together; [1] alone supports, [2] alone does not and the rest
    #   ([1]) still supports without it -> [2] irrelevant.
    # s2 cites [1][3]: supported together; [3] alone supports; [1] alone does not and [3] still
    #   supports without it -> [1] irrelevant.
    # s3 cites [4], which has no passage -> unsupported. s4 cites nothing -> unsupported.
    sentences = scores["sentences"]
    assert [s["supported"] for s in sentences] == [True, True, False, False]
    assert [s["irrelevant"] for s in sentences] == [[2], [1], [], []]
    assert sentences[2]["missing"] == [4]
    assert scores["recall"] == 2 / 4
    assert scores["precision"] == 2 / 5  # relevant [1] and [3] of five citations


def test_precision_keeps_citations_that_are_needed_together() -> None:
    answer = CitedAnswer(
        id="b",
        text="Losartan lowers BLOOD PRESSURE in adults [1][2].",
        passages={1: "BLOOD values", 2: "PRESSURE values"},
    )
    scores = score_answer(answer, KeywordJudge())
    # neither passage alone supports, removing either breaks support: both are needed
    assert scores["sentences"][0]["relevant"] == [1, 2]
    assert (scores["recall"], scores["precision"]) == (1.0, 1.0)


@pytest.fixture(scope="module")
def answers_file(minilm_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real extractive answers in the ``medgraph ask --json`` shape (Answer.to_json_dict)."""
    from medgraph.assistant import Assistant
    from medgraph.settings import Settings

    folder = tmp_path_factory.mktemp("answers")
    settings = Settings(home=folder / "home")
    settings.knowledge = settings.knowledge.model_copy(update={"index_dir": minilm_index})
    settings.models = settings.models.model_copy(update={"engine": "extractive"})
    with Assistant(settings) as assistant:
        answers = [
            json.dumps(assistant.ask(json.loads(line)["question"]).to_json_dict())
            for line in dev_lines(2)
        ]
    return write_lines(folder / "answers.jsonl", answers)


def test_nli_judge_on_extractive_answers(
    answers_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entails = build_nli_model(tmp_path / "nli-yes", NLI_LABELS, [0.0, 5.0, 0.0])
    save = tmp_path / "scores.jsonl"
    args = ["eval", "citations", "--answers", str(answers_file), "--nli-model", str(entails)]
    code, out, err = run_cli([*args, "--json", "--save", str(save)], capsys)
    assert code == 0, err
    row = json.loads(out)["results"][f"nli:{entails}"]
    records = read_jsonl(save)
    assert row["answers"] == len(records) == 2 and row["claims"] > 0
    # this model always says entailment: every cited claim is supported, no citation is needed
    # twice over, so recall is the share of claims that cite something and precision is 1
    for record in records:
        citing = [s for s in record["sentences"] if s["citations"]]
        assert record["recall"] == len(citing) / record["claims"]
        assert record["precision"] == 1.0
    # resume: nothing is judged again
    code, out, _ = run_cli([*args, "--json", "--save", str(save)], capsys)
    assert code == 0 and json.loads(out)["resumed"] == 2

    never = build_nli_model(tmp_path / "nli-no", NLI_LABELS, [5.0, 0.0, 0.0])
    code, out, err = run_cli(
        ["eval", "citations", "--answers", str(answers_file), "--nli-model", str(never), "--json"],
        capsys,
    )
    assert code == 0, err
    contradicted = json.loads(out)["results"][f"nli:{never}"]
    assert contradicted["claims"] == row["claims"] and row["recall"] > 0
    assert contradicted["recall"] == contradicted["precision"] == 0.0

    unnamed = build_nli_model(
        tmp_path / "nli-unnamed", {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, [0, 0, 0]
    )
    code, _, err = run_cli(
        ["eval", "citations", "--answers", str(answers_file), "--nli-model", str(unnamed)], capsys
    )
    assert code == 2 and "no entailment label" in one_error_line(err)


def test_no_judge_with_the_extractive_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = write_lines(tmp_path / "a.jsonl", [json.dumps({"answer": "x", "citations": []})])
    code, _, err = run_cli(
        ["eval", "citations", "--answers", str(answers), "--model", "none"], capsys
    )
    line = one_error_line(err)
    assert code == 2 and "no citation judge" in line and "--nli-model" in line
    code, _, err = run_cli(
        ["eval", "citations", "--answers", str(answers), "--judge", "nli"], capsys
    )
    assert code == 2 and "--nli-model" in one_error_line(err)


def test_malformed_answers_file_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(
        tmp_path / "a.jsonl", [json.dumps({"answer": "x"}), json.dumps({"text": "y"})]
    )
    code, _, err = run_cli(["eval", "citations", "--answers", str(path), "--model", "none"], capsys)
    assert code == 2 and f"{path} line 2: 'answer'" in one_error_line(err)


def test_resume_does_not_judge_saved_answers_again(tmp_path: Path) -> None:
    answers = [
        CitedAnswer(
            id=f"a{i}", text=f"Claim number {i} about STROKE risk [1].", passages={1: "STROKE"}
        )
        for i in range(3)
    ]
    save = tmp_path / "save.jsonl"
    first = KeywordJudge()
    evaluate_citations(answers[:2], first, save=save, progress=False)
    second = KeywordJudge()
    report = evaluate_citations(answers, second, save=save, progress=False)
    assert len(first.pairs) == 2 and len(second.pairs) == 1  # only a2 is judged
    assert report.resumed == 2 and report.rows["keyword"]["recall"] == 1.0


def test_tiny_checkpoint_as_judge(
    answers_file: Path, tiny_text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save = tmp_path / "judged.jsonl"
    code, out, err = run_cli(
        ["eval", "citations", "--answers", str(answers_file), "--judge", "model", "--model",
         tiny_text, "--max-tokens", "32", "--limit", "1", "--json", "--save", str(save)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    row = json.loads(out)["results"][f"transformers:{tiny_text}"]
    # constrained decoding: every verdict parsed as a boolean
    assert row["judge_errors"] == 0 and row["answers"] == 1
    record = read_jsonl(save)[0]
    assert all(isinstance(s["supported"], bool) for s in record["sentences"])
    assert 0.0 <= row["recall"] <= 1.0 and 0.0 <= row["precision"] <= 1.0
