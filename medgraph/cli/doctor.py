"""``medgraph doctor``: what this machine can run."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from medgraph.cli.app import app
from medgraph.cli.options import PresetOption, settings_from_options


@app.command()
def doctor(
    model: str | None = typer.Option(None, help="Use this model for both roles (or 'none')."),
    image_model: str | None = typer.Option(None, help="Hub id or folder of the image reader."),
    text_model: str | None = typer.Option(None, help="Hub id or folder of the text reasoner."),
    preset: str | None = PresetOption,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check Python, torch, CUDA and memory, and whether each model role's weights are here."""
    from medgraph.doctor import run_doctor

    settings = settings_from_options(
        model=model, image_model=image_model, text_model=text_model, preset=preset
    )
    report = run_doctor(settings.models)
    if as_json:
        typer.echo(report.to_json())
        return
    console = Console()
    console.print(f"Python {report.python} on {report.platform}")
    console.print(f"torch {report.torch or 'not installed'}; CUDA {'yes' if report.cuda else 'no'}")
    for device in report.accelerators:
        console.print(f"  GPU {device.name}: {device.memory_gb} GB")
    console.print(f"System memory: {report.memory_gb} GB")
    table = Table("role", "model", "engine", "weights", "needs GB", "available GB", "fits")
    for role in report.roles:
        fits = {True: "yes", False: "NO", None: "?"}[role.fits]
        table.add_row(
            role.role,
            role.model,
            role.engine,
            role.weights,
            str(role.needs_gb if role.needs_gb is not None else "-"),
            str(role.available_gb if role.available_gb is not None else "-"),
            fits,
        )
    console.print(table)
    for role in report.roles:
        for note in role.notes:
            console.print(f"{role.role}: {note}", markup=False)
