"""``create_app``: the FastAPI application of ``medgraph serve``.

Routes: ``/v1/chat/completions``, ``/v1/models`` (OpenAI-compatible), ``/v1/ingest``,
``/v1/search``, ``/v1/health``, ``/v1/openapi.json`` (only with ``server.openapi``), and the web
chat page at ``/`` (behind a login with the API keys when keys are set). Middleware, outermost
first: CORS (one policy for ``/v1`` and the page: only ``server.cors_origins``, never with
credentials), API-key auth of ``/v1`` (with ``MEDGRAPH_API_KEYS``), body size.

At start-up the app removes the temp folders of server processes that died; at shutdown, its own
(:mod:`medgraph.server.scratch`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from medgraph.server import knowledge_api, openai_api
from medgraph.server.auth import API_PREFIX, ApiKeyMiddleware
from medgraph.server.errors import ApiError, install_error_handlers
from medgraph.server.limits import BodySizeLimitMiddleware
from medgraph.server.scratch import ScratchSpace
from medgraph.server.service import ChatService

if TYPE_CHECKING:
    from medgraph.assistant import Assistant
    from medgraph.settings import Settings

logger = logging.getLogger(__name__)


def _mount_web_page(app: FastAPI, service: ChatService, settings: Settings) -> bool:
    """Mount the chat page at ``/`` if the web module is available; whether it was mounted.

    The page takes the API keys as its login, and Gradio may never serve or copy a file from the
    server's home, index or data folders.
    """
    try:
        from medgraph.server.web import mount_chat_ui
    except ImportError as error:
        logger.warning("web chat page not mounted: %s", error)
        return False
    mount_chat_ui(
        app,
        service,
        api_keys=settings.server.key_values(),
        blocked_paths=[settings.home, settings.knowledge.index_dir, settings.data],
    )
    return True


def create_app(
    settings: Settings | None = None,
    *,
    assistant: Assistant | None = None,
    web: bool = True,
    scratch: ScratchSpace | None = None,
) -> FastAPI:
    """The API (and web page) over ``assistant``, built from ``settings`` when not given.

    An assistant built here (models loaded once, index opened) is closed when the app shuts
    down; one passed in belongs to the caller. ``web=False`` leaves out the chat page. Request
    files go to ``scratch`` (default: a new one), removed at shutdown.
    """
    owned = assistant is None
    if assistant is None:
        from medgraph.assistant import Assistant

        assistant = Assistant(settings)
    settings = settings or assistant.settings
    service = ChatService(assistant, settings, scratch=scratch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.scratch.remove_dead_leftovers()
        yield
        service.close()
        if owned:
            assistant.close()

    # No docs pages (Swagger UI and ReDoc load from a CDN); the schema only on request, under
    # /v1 so that the API keys guard it.
    app = FastAPI(
        title="medgraph",
        description="Grounded medical question answering with MedGemma. Not for clinical use.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json" if settings.server.openapi else None,
    )
    app.state.chat_service = service
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(openai_api.router)
    app.include_router(knowledge_api.router)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    @app.api_route("/v1/{path:path}", methods=methods, include_in_schema=False)
    async def unknown_api_path(request: Request, path: str) -> None:
        """Unknown ``/v1`` paths are JSON 404s (not the web page's); a wrong method is 405."""
        allowed = sorted(
            {
                method
                for route in [*openai_api.router.routes, *knowledge_api.router.routes]
                if isinstance(route, APIRoute) and route.path_regex.match(request.url.path)
                for method in route.methods or ()
            }
        )
        if allowed:
            raise ApiError(
                405,
                f"{request.method} is not allowed on /v1/{path}; use {', '.join(allowed)}",
                "method_not_allowed",
                headers={"Allow": ", ".join(allowed)},
            )
        raise ApiError(404, f"no API endpoint {request.method} /v1/{path}", "unknown_endpoint")

    server = settings.server
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=server.max_body_bytes)
    app.add_middleware(
        ApiKeyMiddleware, keys=server.key_values(), ingest_keys=server.ingest_key_values()
    )
    # Always installed, even with no origin configured (then it allows none): Gradio adds its
    # own CORS middleware to the page, which allows credentialed requests from any localhost
    # origin, unless the parent app has Starlette's CORSMiddleware.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=server.cors_origins,
        allow_credentials=False,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Conversation-Id"],
        expose_headers=["X-Conversation-Id", "Retry-After"] if server.cors_origins else [],
    )
    if web:
        _mount_web_page(app, service, settings)
    return app
