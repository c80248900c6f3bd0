"""The Typer application objects that every CLI command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="medgraph",
    help="Grounded medical question answering with MedGemma. Outputs are not for clinical use.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
eval_app = typer.Typer(help="Evaluate retrieval and answers on labelled question sets.")
app.add_typer(eval_app, name="eval")
