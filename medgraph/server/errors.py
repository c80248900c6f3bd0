"""HTTP errors of the API, all answered with OpenAI's JSON error body."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from medgraph.errors import EngineError, IndexUnavailableError, MedgraphError
from medgraph.server.schemas import error_body
from medgraph.server.service import GenerationBusyError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "server_error",
    503: "server_error",
}


class ApiError(Exception):
    """An error answered with ``status`` and an OpenAI-style body."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The JSON response for this error."""
        error_type = _TYPES.get(self.status, "server_error")
        return JSONResponse(
            error_body(self.message, error_type, self.code, self.param),
            status_code=self.status,
            headers=self.headers,
        )


def api_error_for(error: MedgraphError) -> ApiError:
    """The HTTP status and code of a medgraph error (user mistakes are 400)."""
    if isinstance(error, GenerationBusyError):
        return ApiError(
            429,
            str(error),
            "generation_slots_full",
            headers={"Retry-After": str(error.retry_after)},
        )
    if isinstance(error, IndexUnavailableError):
        return ApiError(503, str(error), "index_unavailable")
    if isinstance(error, EngineError):
        return ApiError(502, str(error), "engine_error")
    code = "".join(f"_{c.lower()}" if c.isupper() else c for c in type(error).__name__)
    return ApiError(400, str(error), code.strip("_").removesuffix("_error"))


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    problems = []
    first_param: str | None = None
    for item in error.errors()[:5]:
        location = [str(part) for part in item.get("loc", ()) if part != "body"]
        param = ".".join(location) or None
        first_param = first_param or param
        problems.append(f"{param or 'body'}: {item.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems), first_param


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` an OpenAI-style JSON body."""

    async def on_api_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return error.response()

    async def on_medgraph_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, MedgraphError)
        return api_error_for(error).response()

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        message, param = _validation_message(error)
        return ApiError(400, message, "invalid_request", param=param).response()

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        headers: dict[str, Any] = dict(error.headers or {})
        return ApiError(
            error.status_code, str(error.detail), f"http_{error.status_code}", headers=headers
        ).response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(MedgraphError, on_medgraph_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
