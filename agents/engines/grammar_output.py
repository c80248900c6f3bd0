"""An output layer that computes only the token scores a grammar lets through.

On a 262,144-token vocabulary the output layer is most of a small model's work per token:
Gemma 3 270M's is a 262,144 x 640 matrix, 168M of its 270M parameters, and each decoding step
reads all of it. Under a grammar most steps allow a handful of tokens, often one (the next
characters of a key, a brace, a quote), and the scores of every other token are thrown away.

While :func:`grammar_output_layer` is active, the grammar processor sees each step's new tokens
before the model's forward pass (a pre-hook on the input embedding), advances its matchers and
works out which tokens each row allows; the output layer then computes those rows' scores only
for those tokens, and every score for rows that allow many tokens or have no grammar. The
processor masks the rest as before, so decoding chooses the same tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from medgraph.agents.grammar import GrammarLogitsProcessor

FULL_ROW_FRACTION = 8
"""A row that allows more than 1/8 of the vocabulary gets every score computed."""


def selected_scores(
    weight: torch.Tensor, hidden: torch.Tensor, needed: Sequence[torch.Tensor | None]
) -> torch.Tensor:
    """Scores ``hidden @ weight.T`` (``batch x 1 x vocab``) of the last position, computed where
    ``needed`` asks: per row, the token ids to score, or ``None`` for all of them.

    Rows that name ids get the scores of every id any of them names (one product), or all
    scores when those ids are half the vocabulary. Scores not computed are 0: the grammar masks
    them, and a row that has ended needs finite scores for sampling.
    """
    rows, vocab = hidden.shape[0], weight.shape[0]
    scores = hidden.new_zeros(rows, 1, vocab)
    last = hidden[:, -1]
    full = [row for row, ids in enumerate(needed) if ids is None]
    some = [row for row, ids in enumerate(needed) if ids is not None and ids.numel()]
    if some:
        union = torch.unique(torch.cat([needed[row] for row in some]))  # type: ignore[misc]
        if union.numel() * 2 > vocab:
            full += some
        else:
            union = union.to(weight.device)
            picked = torch.tensor(some, device=hidden.device)
            part = last[picked] @ weight[union].T
            scores[:, 0][picked.unsqueeze(1), union.unsqueeze(0)] = part
    if full:
        picked = torch.tensor(full, device=hidden.device)
        scores[picked, 0] = last[picked] @ weight.T
    return scores


@contextlib.contextmanager
def grammar_output_layer(model: Any, processor: GrammarLogitsProcessor) -> Iterator[None]:
    """While active, ``model``'s output layer computes only the scores ``processor`` will read.

    Models whose output layer is not a bias-free ``nn.Linear``, has accelerate's dispatch hook
    (its weights may be offloaded until that hook runs) or that have no input embedding module
    run unchanged; so does any forward pass the processor has not prepared for (prompt prefills
    outside ``generate``, several positions at once).
    """
    head = model.get_output_embeddings()
    embedding = model.get_input_embeddings()
    if (
        not isinstance(head, nn.Linear)
        or head.bias is not None
        or hasattr(head, "_hf_hook")
        or embedding is None
    ):
        yield
        return
    width = processor.width(head.out_features)
    most = head.out_features // FULL_ROW_FRACTION
    plain = head.forward
    own = head.__dict__.get("forward")  # a forward set on the instance is put back afterwards

    def observe(_module: nn.Module, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 2:
            processor.observe(args[0], width)

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        needed = processor.needed_scores(most) if hidden.dim() == 3 else None
        if needed is None or hidden.shape[1] != 1 or len(needed) != hidden.shape[0]:
            return plain(hidden)
        return selected_scores(head.weight, hidden, needed)

    hook = embedding.register_forward_pre_hook(observe)
    head.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        hook.remove()
        if own is None:
            del head.forward
        else:
            head.forward = own  # type: ignore[method-assign]
