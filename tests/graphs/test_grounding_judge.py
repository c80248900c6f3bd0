"""The grounding judge's prompts: one per claim, the claim last."""

from __future__ import annotations

from medgraph.graphs.assistant import grounding_judge
from tests.scripted import Call, ScriptedChatModel, prompt_text

PASSAGE = "Mitochondria of lace plant cells change before the cells die by programmed cell death."


def test_verdicts_on_claims_citing_the_same_passages_differ_only_after_the_passages() -> None:
    def verdict(call: Call) -> dict[str, bool]:
        return {"supported": "before" in prompt_text(call), "relevant": True}

    model = ScriptedChatModel(verdict)
    judge = grounding_judge(model)
    assert judge is not None
    claims = ["Mitochondria change before the cells die.", "Lace plants grow in Madagascar."]
    verdicts = judge([("Do mitochondria play a role?", claim, PASSAGE) for claim in claims])
    assert verdicts == [(1.0, 1.0), (1.0, 1.0)]
    first, second = (prompt_text(call) for call in model.calls)
    # Everything up to the claim is shared: an engine with prefix reuse prefills it once.
    assert first.endswith(claims[0]) and second.endswith(claims[1])
    assert first.removesuffix(claims[0]) == second.removesuffix(claims[1])
    assert PASSAGE in first.removesuffix(claims[0])
