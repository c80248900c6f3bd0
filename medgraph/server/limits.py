"""Request limits: body size (ASGI middleware) and attached images (data URLs, pixel count)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medgraph.agents.images import load_image
from medgraph.agents.study_input import is_zip_file, study_files
from medgraph.errors import ImageLoadError, ImageTooLargeError, StudyTooLargeError
from medgraph.server.auth import send_json_error
from medgraph.server.errors import ApiError

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "application/dicom": ".dcm"}


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413: by Content-Length before reading, and
    by counting when the body is chunked."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return (
            f"request body is larger than the server's limit of {self.max_bytes} bytes; send "
            "smaller images or files (or raise server.max_body_bytes)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await send_json_error(
                send, 413, self._message(), "invalid_request_error", "request_too_large"
            )
            return
        received = 0
        started = False
        answered = False  # the 413 went out: whatever the app answers after is dropped

        async def counting_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not started and not answered:
                        answered = True
                        await send_json_error(
                            send, 413, self._message(), "invalid_request_error", "request_too_large"
                        )
                    # Frameworks may wrap this (FastAPI answers 400); the 413 has gone already.
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not answered:
                raise


def data_url_bytes(url: str) -> bytes:
    """The bytes of a ``data:`` URL; 400 for any other URL (nothing is fetched or read)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme != "data":
        if scheme in ("http", "https"):
            parts = urlsplit(url)  # query strings of signed URLs carry credentials: drop them
            shown = f"{parts.scheme}://{parts.netloc}{parts.path}"[:80]
        else:
            shown = f"{scheme or 'a bare'}: URL"
        raise ApiError(
            400,
            f"image_url {shown!r} is not accepted: only data URLs are "
            "(data:image/png;base64,..., JPEG and DICOM too); the server fetches no URLs",
            "unsupported_image_url",
            param="messages.content.image_url.url",
        )
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise ApiError(
            400,
            "data URL has no ',' before its payload; expected 'data:image/png;base64,<data>'",
            "invalid_image",
        )
    if not header.lower().endswith(";base64"):
        return unquote_to_bytes(payload)
    compact = "".join(payload.split())
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ApiError(
            400,
            f"data URL image is not valid base64 ({error}); encode the file's bytes",
            "invalid_image",
        ) from error
    if not data:
        raise ApiError(400, "data URL image is empty; encode the file's bytes", "invalid_image")
    return data


def save_data_url_image(url: str, folder: Path, number: int, *, max_pixels: int) -> Path:
    """Check one image (pixel count from the header first, then a full decode) and save its bytes.

    The original bytes are kept, so DICOM metadata reaches the assistant. Oversized images are
    413; anything that does not decode as PNG, JPEG, DICOM (or another safe format) is 400. A
    zip of one DICOM study (``data:application/zip;base64,...``) is saved after its member names
    and sizes are checked; the assistant reads its series.
    """
    data = data_url_bytes(url)
    if data[:4] == b"PK\x03\x04":
        return _save_study_zip(data, folder, number)
    try:
        loaded = load_image(data, max_pixels=max_pixels, name=f"image-{number}")
    except ImageTooLargeError as error:
        size = f"has {error.pixels} pixels" if error.pixels else "is too large to decode safely"
        raise ApiError(
            413,
            f"image {number} {size}, over the server's limit of {error.max_pixels}; downscale "
            "it (or raise server.max_image_pixels)",
            "image_too_large",
        ) from error
    except ImageLoadError as error:
        raise ApiError(400, f"image {number}: {error}", "invalid_image") from error
    path = folder / f"image-{number}{_EXTENSIONS.get(loaded.media_type, '.img')}"
    path.write_bytes(data)
    return path


def _save_study_zip(data: bytes, folder: Path, number: int) -> Path:
    """Save a study zip after refusing traversal names (400) and over-size contents (413)."""
    path = folder / f"study-{number}.zip"
    path.write_bytes(data)
    try:
        if not is_zip_file(path):
            raise ImageLoadError("not a zip archive")
        study_files(path)
    except StudyTooLargeError as error:
        message = str(error).replace(str(path), "zip")  # the server's temp path means nothing
        raise ApiError(413, f"image {number}: {message}", "study_too_large") from error
    except ImageLoadError as error:
        message = str(error).replace(str(path), "zip")
        raise ApiError(400, f"image {number}: {message}", "invalid_image") from error
    return path
