"""The ``medgraph`` command line: each command lives in its own module and registers on ``app``.

User mistakes (every :class:`~medgraph.errors.MedgraphError`) print one line on standard error and
exit with code 2; only bugs produce a traceback.
"""

from __future__ import annotations

import re
import sys

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

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
        if error.title not in _settings_models():
            raise  # a bug, not a user's setting
        typer.echo(f"medgraph: error: {settings_problem(error)}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except SettingsError as error:  # a setting that does not parse at all (e.g. bad JSON)
        field = re.search(r'field "(\w+)"', str(error))
        variable = f"MEDGRAPH_{field.group(1).upper()}" if field else "a MEDGRAPH_ variable"
        typer.echo(
            f"medgraph: error: {variable} does not parse ({error}); give it as JSON or set "
            f"its parts as {variable}__FIELD=value",
            err=True,
        )
        sys.exit(EXIT_USER_ERROR)


def _settings_models() -> set[str]:
    """Names of Settings and its section models (the titles of their validation errors)."""
    sections = {
        field.annotation.__name__
        for field in Settings.model_fields.values()
        if isinstance(field.annotation, type)
    }
    return {Settings.__name__, *sections}


_SECRET_PARTS = ("key", "secret", "password", "token")


def settings_problem(error: ValidationError) -> str:
    """One line naming each bad setting, its environment variable and what it must be (the
    value is shown unless the setting holds a secret)."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        variable = "MEDGRAPH_" + "__".join(str(part).upper() for part in item["loc"])
        secret = any(part in field.lower() for part in _SECRET_PARTS)
        shown = variable if secret else f"{variable}={item.get('input')!r}"
        problems.append(f"{field} ({shown}): {item['msg']}")
    return "invalid setting " + "; ".join(problems) + ". Fix it in the environment or medgraph.toml"


__all__ = ["app", "main"]
