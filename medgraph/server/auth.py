"""Bearer-key authentication of every ``/v1`` request (ASGI middleware, before the body is read)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from medgraph.server.schemas import error_body

API_PREFIX = "/v1"


def _is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


async def send_json_error(
    send: Send,
    status: int,
    message: str,
    error_type: str,
    code: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer an ASGI request with an OpenAI-style JSON error."""
    body = json.dumps(error_body(message, error_type, code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


READER = "reader"
INGESTER = "ingester"


class ApiKeyMiddleware:
    """With keys configured, ``/v1`` requests need ``Authorization: Bearer <key>`` (else 401).

    The accepted key is put in ``scope["state"]["api_key"]`` so threads can be namespaced by it,
    and its role in ``scope["state"]["api_role"]``: ``ingester`` for one of ``ingest_keys``,
    else ``reader``. Without keys every request is an anonymous ``ingester`` (local use).
    """

    def __init__(self, app: ASGIApp, keys: Sequence[str], ingest_keys: Sequence[str] = ()) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys if key]
        self.ingest_keys = {key.encode() for key in ingest_keys if key}

    def _matching_key(self, header: bytes | None) -> str | None:
        if header is None:
            return None
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return None
        token = token.strip()
        matched = None
        for key in self.keys:  # compare with every key: timing does not reveal which matched
            if hmac.compare_digest(token, key):
                matched = key
        return matched.decode() if matched is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_api_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not self.keys:
            scope.setdefault("state", {})["api_role"] = INGESTER
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization")
        key = self._matching_key(header)
        if key is None:
            message = (
                "missing API key: send 'Authorization: Bearer <key>' (one of MEDGRAPH_API_KEYS)"
                if header is None
                else "invalid API key: the bearer key is not one of the server's MEDGRAPH_API_KEYS"
            )
            await send_json_error(
                send,
                401,
                message,
                "authentication_error",
                "invalid_api_key",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        state = scope.setdefault("state", {})
        state["api_key"] = key
        state["api_role"] = INGESTER if key.encode() in self.ingest_keys else READER
        await self.app(scope, receive, send)
