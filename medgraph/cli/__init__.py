"""The ``medgraph`` command line: each command lives in its own module and registers on ``app``.

User mistakes (every :class:`~medgraph.errors.MedgraphError`) print one line on standard error and
exit with code 2; only bugs produce a traceback.
"""

from __future__ import annotations

import sys

import typer

from medgraph.cli import assistant as _assistant  # noqa: F401  (registers commands)
from medgraph.cli import doctor as _doctor  # noqa: F401  (registers commands)
from medgraph.cli import evals as _evals  # noqa: F401  (registers commands)
from medgraph.cli import knowledge as _knowledge  # noqa: F401  (registers commands)
from medgraph.cli import research as _research  # noqa: F401  (registers commands)
from medgraph.cli import serve as _serve  # noqa: F401  (registers commands)
from medgraph.cli.app import app
from medgraph.errors import MedgraphError

EXIT_USER_ERROR = 2


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``medgraph`` console script."""
    try:
        app(args=argv, prog_name="medgraph", standalone_mode=True)
    except MedgraphError as error:
        typer.echo(f"medgraph: error: {error}", err=True)
        sys.exit(EXIT_USER_ERROR)


__all__ = ["app", "main"]
