"""``medgraph serve``: the OpenAI-compatible API and the web chat page."""

from __future__ import annotations

import os

import typer

from medgraph.cli.app import app
from medgraph.cli.options import (
    ImageModelOption,
    IndexOption,
    ModelOption,
    PresetOption,
    TextModelOption,
    settings_from_options,
)

_STARTUP_FAILURE = 3  # uvicorn's exit status when the server cannot start


@app.command()
def serve(
    host: str | None = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Port (default 8000)."),
    index: str | None = IndexOption,
    model: str | None = ModelOption,
    image_model: str | None = ImageModelOption,
    text_model: str | None = TextModelOption,
    preset: str | None = PresetOption,
    no_web: bool = typer.Option(False, "--no-web", help="Serve the API only, no chat page."),
    allow_open: bool = typer.Option(
        False,
        "--allow-open",
        help="Serve without API keys on a non-loopback --host (refused otherwise).",
    ),
) -> None:
    """Serve the assistant: OpenAI-compatible API at /v1 and the web chat page at /.

    Models load once at start. Auth: set MEDGRAPH_API_KEYS=key1,key2. Without keys the server
    binds to loopback only, unless --allow-open.
    """
    try:
        import uvicorn

        from medgraph.server.app import create_app
        from medgraph.server.connections import server_config
        from medgraph.server.scratch import ScratchSpace
    except ImportError as error:
        from medgraph.errors import ConfigurationError

        raise ConfigurationError(
            f"medgraph serve needs the server extras ({error.name} is missing): "
            "pip install 'medgraph[serve]'"
        ) from error

    settings = settings_from_options(
        model=model, image_model=image_model, text_model=text_model, index=index, preset=preset
    )
    updates: dict[str, object] = {
        k: v for k, v in (("host", host), ("port", port)) if v is not None
    }
    if allow_open:
        updates["allow_open"] = True
    if updates:
        settings.server = settings.server.model_copy(update=updates)
    settings.server.check_exposure()  # before any model loads
    # Web uploads go to a folder of this process only (mode 0700), not a shared <tmp>/gradio: in
    # the process's scratch folder, removed at shutdown (or at the next start after a crash).
    scratch = ScratchSpace()
    if "GRADIO_TEMP_DIR" not in os.environ:
        os.environ["GRADIO_TEMP_DIR"] = str(scratch.subfolder("web"))
    try:
        application = create_app(settings, web=not no_web, scratch=scratch)
        keys = settings.server
        auth = (
            f"on: {len(keys.api_keys)} reader key(s), {len(keys.ingest_keys)} ingest key(s)"
            if keys.key_values()
            else "off (local use only; set MEDGRAPH_API_KEYS)"
        )
        typer.echo(
            f"medgraph serve: http://{settings.server.host}:{settings.server.port} "
            f"(engine {application.state.chat_service.engine}, auth {auth}). Not for clinical use.",
            err=True,
        )
        server = uvicorn.Server(server_config(application, settings.server))
        server.run()
    finally:
        scratch.close()  # also when the app failed to build or the server to start
    if not server.started:  # uvicorn has logged why (the port is taken, say)
        raise typer.Exit(_STARTUP_FAILURE)
