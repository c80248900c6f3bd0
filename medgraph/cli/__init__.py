"""The ``medgraph`` command line: each command lives in its own module and registers on ``app``.

User mistakes (every :class:`~medgraph.errors.MedgraphError`) print one line on standard error and
exit with code 2; only bugs produce a traceback.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from medgraph.cli import assistant as _assistant  # noqa: F401  (registers commands)
from medgraph.cli import doctor as _doctor  # noqa: F401  (registers commands)
from medgraph.cli import evals as _evals  # noqa: F401  (registers commands)
from medgraph.cli import knowledge as _knowledge  # noqa: F401  (registers commands)
from medgraph.cli import research as _research  # noqa: F401  (registers commands)
from medgraph.cli import serve as _serve  # noqa: F401  (registers commands)
from medgraph.cli.app import app
from medgraph.errors import MedgraphError
from medgraph.settings import Settings

EXIT_USER_ERROR = 2


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``medgraph`` console script."""
    try:
        app(args=argv, prog_name="medgraph", standalone_mode=True)
    except MedgraphError as error:
        typer.echo(f"medgraph: error: {error}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except ValidationError as error:
        if error.title != Settings.__name__:
            raise  # a bug, not a user's setting
        typer.echo(f"medgraph: error: {settings_problem(error)}", err=True)
        sys.exit(EXIT_USER_ERROR)


def settings_problem(error: ValidationError) -> str:
    """One line naming each bad setting, its environment variable and what it must be."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        variable = "MEDGRAPH_" + "__".join(str(part).upper() for part in item["loc"])
        problems.append(f"{field} ({variable}={item.get('input')!r}): {item['msg']}")
    return "invalid setting " + "; ".join(problems) + ". Fix it in the environment or medgraph.toml"


__all__ = ["app", "main"]
