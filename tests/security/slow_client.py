"""Raw-socket clients that send a request a byte at a time, as a slow-connection attack does."""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass


@dataclass
class Trickle:
    """What a trickling client saw: when the server closed (seconds after connecting, None if it
    never did within the client's time), what it answered, how many bytes were sent."""

    closed_after: float | None
    received: bytes
    sent: int


def trickle(
    port: int,
    payload: bytes,
    *,
    interval: float,
    give_up_after: float,
    prefix: bytes = b"",
) -> Trickle:
    """Connect to 127.0.0.1:``port``, send ``prefix`` at once, then ``payload`` one byte every
    ``interval`` seconds, reading whatever the server answers, until it closes the connection or
    ``give_up_after`` seconds have passed (the loop is bounded by both)."""
    received = b""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        try:
            if prefix:
                sock.sendall(prefix)
            for byte in payload:
                if time.monotonic() - started > give_up_after:
                    break
                sock.sendall(bytes([byte]))
                sent += 1
                pause_until = time.monotonic() + interval
                while (left := pause_until - time.monotonic()) > 0:
                    readable, _, _ = select.select([sock], [], [], left)
                    if not readable:
                        break
                    chunk = sock.recv(4096)
                    if not chunk:
                        return Trickle(time.monotonic() - started, received, sent)
                    received += chunk
            # Payload sent (or time up): wait for the close, still bounded.
            while (left := give_up_after - (time.monotonic() - started)) > 0:
                readable, _, _ = select.select([sock], [], [], left)
                if not readable:
                    break
                chunk = sock.recv(4096)
                if not chunk:
                    return Trickle(time.monotonic() - started, received, sent)
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            return Trickle(time.monotonic() - started, received, sent)
    return Trickle(None, received, sent)


def http_head(method: str, path: str, *headers: str) -> bytes:
    """An HTTP/1.1 request head (request line, Host, ``headers``, blank line)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()
