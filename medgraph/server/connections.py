"""Connection limits of ``medgraph serve``: read deadlines, keep-alive and a connection cap.

uvicorn bounds idle kept-alive connections (``timeout_keep_alive``) and connections per process
(``limit_concurrency``: a request that arrives while the cap is reached is answered 503 and its
connection closed), but not how long reading a request may take: a client that sends its headers
or its body a byte at a time holds its connection for as long as it likes.
:class:`ReadDeadlineProtocol`, uvicorn's h11 protocol with two deadlines, closes such a
connection. The request line and headers must arrive within ``header_timeout`` seconds of the
connection opening (or of the first byte of a later request on a kept-alive connection), else the
client gets a 408 and the connection is closed; the body must arrive within ``body_timeout``
seconds of the end of the headers, else the connection is closed (the app sees the client
disconnect). The deadlines are totals, not gaps between bytes, so trickling bytes never extends
them. While the app works on a request it has read in full, no deadline runs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from medgraph.server.config import ServerSettings

logger = logging.getLogger(__name__)
ReadPhase = Literal["headers", "body"]


class ConnectionConfig(uvicorn.Config):
    """uvicorn's Config serving HTTP/1.1 with :class:`ReadDeadlineProtocol` and its deadlines."""

    def __init__(
        self, app: Any, *, header_timeout: float, body_timeout: float, **options: Any
    ) -> None:
        """``options`` are uvicorn.Config's (host, port, timeout_keep_alive, ...), not ``http``;
        the timeouts are seconds (positive: ``ServerSettings`` checks them)."""
        super().__init__(app, http=ReadDeadlineProtocol, **options)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout


class ReadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol that closes connections whose request arrives too slowly."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """As H11Protocol; ``config`` must be a :class:`ConnectionConfig` (it holds the limits)."""
        if not isinstance(config, ConnectionConfig):
            raise TypeError(
                f"ReadDeadlineProtocol needs a ConnectionConfig with its read timeouts, got "
                f"{type(config).__name__}; build the config with server_config()"
            )
        super().__init__(config, server_state, app_state, _loop)
        self._timeouts: dict[ReadPhase, float] = {
            "headers": config.header_timeout,
            "body": config.body_timeout,
        }
        self._phase: ReadPhase | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._upgraded = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline: a client that connects and sends nothing is closed too."""
        super().connection_made(transport)
        self._enter("headers")

    def data_received(self, data: bytes) -> None:
        """Parse ``data`` as uvicorn does, then follow the request into its next phase."""
        super().data_received(data)
        self._follow_request()

    def on_response_complete(self) -> None:
        """After a response, a pipelined request may already be arriving: follow it."""
        super().on_response_complete()
        self._follow_request()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """The WebSocket protocol takes the connection over: no read deadline from here on."""
        self._upgraded = True
        self._enter(None)
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel the deadline, then let uvicorn clean up."""
        self._enter(None)
        super().connection_lost(exc)

    def _follow_request(self) -> None:
        """Run the deadline of the phase the client's side of the connection is in now."""
        if self._upgraded or self.transport.is_closing():
            self._enter(None)
            return
        state = self.conn.their_state
        unparsed, _ = self.conn.trailing_data
        if state is h11.SEND_BODY:
            self._enter("body")
        elif state is h11.IDLE and (unparsed or self._phase == "headers"):
            self._enter("headers")  # a request has begun (or the connection is still new)
        else:
            self._enter(None)  # read in full (the app works), or idle between requests

    def _enter(self, phase: ReadPhase | None) -> None:
        if phase == self._phase:
            return  # the deadline is a total: more bytes of the same phase do not move it
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        if phase is not None:
            self._deadline = self.loop.call_later(self._timeouts[phase], self._expire, phase)

    def _expire(self, phase: ReadPhase) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        logger.info(
            "closed the connection of %s: request %s not received within %g s",
            client,
            phase,
            self._timeouts[phase],
        )
        if phase == "headers":
            self._send_timeout_response()
        self.transport.close()

    def _send_timeout_response(self) -> None:
        """408 with ``Connection: close`` (no request was parsed, so the app never saw one)."""
        body = f"request headers not received within {self._timeouts['headers']:g} s\n".encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            for event in (
                h11.Response(status_code=408, headers=headers, reason=b"Request Timeout"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                output = self.conn.send(event)
                if output:
                    self.transport.write(output)
        except h11.LocalProtocolError:  # a response had begun after all: just close
            pass


def server_config(app: Any, server: ServerSettings, **options: Any) -> ConnectionConfig:
    """The uvicorn config of ``medgraph serve`` for ``app`` from ``server``'s settings: host, port,
    read deadlines, keep-alive and the connection cap; ``options`` go to uvicorn.Config."""
    return ConnectionConfig(
        app,
        host=server.host,
        port=server.port,
        header_timeout=server.header_timeout_seconds,
        body_timeout=server.body_timeout_seconds,
        timeout_keep_alive=server.keep_alive_seconds,
        # uvicorn counts the connection making the request among the open ones.
        limit_concurrency=server.max_connections + 1,
        **options,
    )
