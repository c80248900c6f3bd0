"""A small OpenAI-compatible chat server for tests, answering from a local checkpoint.

It plays the part vLLM plays in production: ``POST /v1/chat/completions`` (plain and streamed as
server-sent events) and ``GET /v1/models``, with ``response_format`` JSON schemas passed to the
transformers engine as guided decoding. Every exchange is recorded so tests can assert what the
client sent, and :class:`Behaviour` switches on the failures a real deployment shows: HTTP 500,
a reply slower than the client's timeout, a server without guided decoding (400 on
``response_format``) and API-key checks (401).

Not part of the package: it lives under ``tests/`` and is started by fixtures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from medgraph.agents.conversation import Conversation, ImagePart, Part, Role, TextPart, Turn
from medgraph.agents.engines.base import GenerationRequest
from medgraph.agents.engines.transformers_engine import TransformersEngine
from medgraph.agents.images import load_image_block
from medgraph.errors import MedgraphError

DEFAULT_MAX_TOKENS = 64


@dataclass
class Behaviour:
    """How the server misbehaves; the defaults describe a healthy vLLM-like server."""

    fail_status: int | None = None
    """Answer every chat request with this HTTP status and an OpenAI-style error body."""
    delay_seconds: float = 0.0
    """Wait this long before answering a chat request (to outlast a client timeout)."""
    reject_response_format: bool = False
    """Answer 400 to any request carrying ``response_format`` (no guided decoding)."""
    schema_forms: tuple[str, ...] | None = None
    """The schema forms the server takes (``json_schema``, ``gbnf``, ``json_object_schema``,
    ``guided_json``, ``format``); ``None``: all of them. This server cannot run a GBNF grammar:
    where it takes ``gbnf`` it records the grammar and decodes freely."""
    schema_refusal_status: int = 400
    """The status a refused schema form gets (llama.cpp's server answers 500)."""
    schema_refusal_message: str | None = None
    """The refusal's message, sent with no ``param`` (as llama-cpp-python does); ``None``: a
    message naming the form, with ``param`` set to ``response_format``."""
    api_key: str | None = None
    """Require ``Authorization: Bearer <api_key>``; 401 otherwise."""
    fail_stream_after: int | None = None
    """Break a streamed reply with an in-band error event after this many content chunks."""


@dataclass
class Exchange:
    """One HTTP request the server received and what it answered."""

    method: str
    path: str
    headers: dict[str, str]
    """Request headers, names lower-cased."""
    body: dict[str, Any] | None
    status: int | None = None
    response: dict[str, Any] | None = None
    """The JSON reply; for a stream, the reassembled completion (content, usage)."""
    chunks: list[dict[str, Any]] = field(default_factory=list)
    """The chunks of a streamed reply, in order."""


class RequestError(Exception):
    """A request the server refuses, with the HTTP status and OpenAI error fields to send."""

    def __init__(
        self, status: int, message: str, *, kind: str = "invalid_request_error", param: str = ""
    ) -> None:
        """Remember the status and the error body's fields."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param

    def body(self) -> dict[str, Any]:
        """The OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param or None,
                "code": self.status,
            }
        }


def _text_of(part: Mapping[str, Any]) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise RequestError(400, "a text content part needs a string 'text'", param="messages")
    return text


def _parts_of(content: Any) -> list[Part]:
    """Content (a string or a list of text / image_url parts) as conversation parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    if not isinstance(content, list):
        raise RequestError(400, "message content must be a string or a list of parts")
    parts: list[Part] = []
    for item in content:
        kind = item.get("type") if isinstance(item, Mapping) else None
        if kind == "text":
            parts.append(TextPart(_text_of(item)))
        elif kind == "image_url":
            try:
                parts.append(ImagePart(load_image_block(item)))
            except MedgraphError as error:
                raise RequestError(400, f"cannot decode image_url: {error}") from error
        else:
            raise RequestError(400, f"unsupported content part type {kind!r}", param="messages")
    return parts


def to_conversation(messages: Any) -> Conversation:
    """OpenAI chat messages as alternating Gemma turns (system text folded into the first user)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list", param="messages")
    system: list[str] = []
    turns: list[Turn] = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise RequestError(400, "each message must be an object", param="messages")
        role = message.get("role")
        parts = _parts_of(message.get("content"))
        if role in ("system", "developer"):
            system.extend(p.text for p in parts if isinstance(p, TextPart))
            continue
        if role not in ("user", "assistant"):
            raise RequestError(400, f"unsupported role {role!r}", param="messages")
        gemma_role: Role = "model" if role == "assistant" else "user"
        if turns and turns[-1].role == gemma_role:
            turns[-1].parts.extend(parts)
        else:
            turns.append(Turn(gemma_role, parts))
    if not turns or turns[0].role != "user":
        turns.insert(0, Turn("user", []))
    if system:
        turns[0].parts.insert(0, TextPart("\n\n".join(system)))
    return Conversation(turns)


def schema_form_of(body: Mapping[str, Any]) -> str | None:
    """Which form carries a schema in a chat request body, if any."""
    if isinstance(body.get("grammar"), str):
        return "gbnf"
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping):
        if response_format.get("type") == "json_schema":
            return "json_schema"
        if response_format.get("type") == "json_object" and "schema" in response_format:
            return "json_object_schema"
    for form in ("guided_json", "format"):
        if isinstance(body.get(form), dict):
            return form
    return None


def _json_schema_of(body: Mapping[str, Any]) -> dict[str, Any] | None:
    for form in ("guided_json", "format"):
        if isinstance(body.get(form), dict):
            return dict(body[form])
    response_format = body.get("response_format")
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        return dict(schema) if isinstance(schema, dict) else {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if isinstance(schema, dict):
            return schema
        raise RequestError(
            400, "response_format json_schema needs a 'schema' object", param="response_format"
        )
    raise RequestError(400, f"unsupported response_format type {kind!r}", param="response_format")


def _stops_of(body: Mapping[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return tuple(stop)
    raise RequestError(400, "'stop' must be a string or a list of strings", param="stop")


class OpenAICompatibleServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1 backed by :class:`TransformersEngine`.

    Use as a context manager (``with OpenAICompatibleServer(folder) as server:``); ``base_url``
    is what an OpenAI client needs. Change :attr:`behaviour` for one block with
    :meth:`behaving`.
    """

    def __init__(self, checkpoint: str, *, model_name: str = "tiny-medgemma") -> None:
        """Serve ``checkpoint`` (a local model folder) under the name ``model_name``."""
        self.checkpoint = checkpoint
        self.model_name = model_name
        self.behaviour = Behaviour()
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._engines: dict[float, TransformersEngine] = {}
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (chosen free by the OS)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the OpenAI client's ``base_url``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAICompatibleServer:
        """Load the model and start serving in a background thread."""
        if self._httpd is not None:
            return self
        self.engine(0.0)  # load before listening, so the first request is not slowed by it
        handler = type("BoundHandler", (_Handler,), {"app": self})
        self._stopping.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"openai-test-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake any delayed handler and close the socket."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the server stops first; True when it is stopping."""
        return self._stopping.wait(seconds)

    def __enter__(self) -> OpenAICompatibleServer:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    @contextlib.contextmanager
    def behaving(self, **changes: Any) -> Iterator[OpenAICompatibleServer]:
        """Apply :class:`Behaviour` field ``changes`` for the block, then restore the old ones."""
        with self._lock:
            previous = self.behaviour
            self.behaviour = dataclasses.replace(previous, **changes)
        try:
            yield self
        finally:
            with self._lock:
                self.behaviour = previous

    # -- recording ---------------------------------------------------------------------------

    def record(self, exchange: Exchange) -> None:
        """Append ``exchange`` to the log (thread-safe)."""
        with self._lock:
            self.exchanges.append(exchange)

    def clear(self) -> None:
        """Forget recorded exchanges."""
        with self._lock:
            self.exchanges.clear()

    def chat_exchanges(self) -> list[Exchange]:
        """Recorded chat-completions exchanges, oldest first."""
        with self._lock:
            return [e for e in self.exchanges if e.path.endswith("/chat/completions")]

    @property
    def last_request(self) -> dict[str, Any]:
        """Body of the most recent chat-completions request."""
        chats = self.chat_exchanges()
        if not chats or chats[-1].body is None:
            raise AssertionError("the server has received no chat-completions request")
        return chats[-1].body

    # -- inference ---------------------------------------------------------------------------

    def engine(self, temperature: float) -> TransformersEngine:
        """The engine for ``temperature`` (the weights are shared through the model cache)."""
        with self._lock:
            engine = self._engines.get(temperature)
            if engine is None:
                engine = TransformersEngine(self.checkpoint, temperature=temperature)
                self._engines[temperature] = engine
            return engine

    def plan(self, body: Mapping[str, Any]) -> tuple[TransformersEngine, GenerationRequest]:
        """Validate a chat-completions body and turn it into an engine call."""
        model = body.get("model")
        if model != self.model_name:
            raise RequestError(
                404,
                f"The model `{model}` does not exist; this server serves `{self.model_name}`",
                kind="NotFoundError",
                param="model",
            )
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is None:
            max_tokens = DEFAULT_MAX_TOKENS
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise RequestError(400, "max_tokens must be a positive integer", param="max_tokens")
        temperature = body.get("temperature", 1.0)
        if not isinstance(temperature, int | float) or temperature < 0:
            raise RequestError(400, "temperature must be a number >= 0", param="temperature")
        request = GenerationRequest(
            conversation=to_conversation(body.get("messages")),
            max_new_tokens=max_tokens,
            json_schema=_json_schema_of(body),
            stop=_stops_of(body),
        )
        return self.engine(float(temperature)), request


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the owning :class:`OpenAICompatibleServer` (set as ``app``)."""

    app: OpenAICompatibleServer
    server_version = "medgraph-test-openai/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: pytest output is no place for access logs."""

    # -- plumbing ----------------------------------------------------------------------------

    def _send_json(self, exchange: Exchange, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        exchange.status, exchange.response = status, payload
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout ran out): nothing left to tell it

    def _send_error(self, exchange: Exchange, error: RequestError) -> None:
        self._send_json(exchange, error.status, error.body())

    def _authorised(self, exchange: Exchange) -> bool:
        key = self.app.behaviour.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._send_error(
            exchange,
            RequestError(401, "Incorrect API key provided", kind="authentication_error"),
        )
        return False

    def _exchange(self, body: dict[str, Any] | None) -> Exchange:
        headers = {name.lower(): value for name, value in self.headers.items()}
        exchange = Exchange(self.command, self.path, headers, body)
        self.app.record(exchange)
        return exchange

    # -- routes ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        """``GET /v1/models``."""
        exchange = self._exchange(None)
        if not self._authorised(exchange):
            return
        if self.path.rstrip("/") != "/v1/models":
            self._send_error(exchange, RequestError(404, f"no route {self.path}", kind="not_found"))
            return
        model = {"id": self.app.model_name, "object": "model", "created": 0, "owned_by": "tests"}
        self._send_json(exchange, 200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        """``POST /v1/chat/completions``."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = None
        exchange = self._exchange(body if isinstance(body, dict) else None)
        if not self._authorised(exchange):
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_error(exchange, RequestError(404, f"no route {self.path}", kind="not_found"))
            return
        if not isinstance(body, dict):
            self._send_error(exchange, RequestError(400, "the body must be a JSON object"))
            return
        behaviour = self.app.behaviour
        if behaviour.delay_seconds and self.app.pause(behaviour.delay_seconds):
            return  # the server is shutting down
        if behaviour.fail_status is not None:
            self._send_error(
                exchange,
                RequestError(
                    behaviour.fail_status,
                    "The server had an error while processing your request",
                    kind="server_error",
                ),
            )
            return
        if behaviour.reject_response_format and body.get("response_format") is not None:
            self._send_error(
                exchange,
                RequestError(
                    400,
                    "response_format is not supported by this server (no guided decoding)",
                    param="response_format",
                ),
            )
            return
        form = schema_form_of(body)
        if behaviour.schema_forms is not None and form and form not in behaviour.schema_forms:
            if behaviour.schema_refusal_message is not None:
                refusal = RequestError(
                    behaviour.schema_refusal_status,
                    behaviour.schema_refusal_message,
                    kind="internal_server_error",
                )
            else:
                refusal = RequestError(
                    behaviour.schema_refusal_status,
                    f"schema form {form!r} is not supported; this server takes: "
                    + ", ".join(behaviour.schema_forms),
                    param="response_format",
                )
            self._send_error(exchange, refusal)
            return
        try:
            engine, request = self.app.plan(body)
            if body.get("stream"):
                self._stream(exchange, body, engine, request)
            else:
                self._complete(exchange, engine, request)
        except RequestError as error:
            self._send_error(exchange, error)
        except Exception as error:  # a bug or engine failure: report it as vLLM would
            self._send_error(
                exchange,
                RequestError(500, f"{type(error).__name__}: {error}", kind="server_error"),
            )

    def _envelope(self, kind: str, completion_id: str) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": kind,
            "created": int(time.time()),
            "model": self.app.model_name,
        }

    def _complete(
        self, exchange: Exchange, engine: TransformersEngine, request: GenerationRequest
    ) -> None:
        completion = engine.generate([request])[0]
        finish = "length" if completion.completion_tokens >= request.max_new_tokens else "stop"
        payload = self._envelope("chat.completion", f"chatcmpl-{uuid.uuid4().hex}")
        payload["choices"] = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "finish_reason": finish,
            }
        ]
        payload["usage"] = {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        }
        self._send_json(exchange, 200, payload)

    def _stream(
        self,
        exchange: Exchange,
        body: Mapping[str, Any],
        engine: TransformersEngine,
        request: GenerationRequest,
    ) -> None:
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        options = body.get("stream_options")
        include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
        pieces = engine.stream(request)
        first = next(pieces, None)  # fail before the 200 is sent, while an error can be told
        exchange.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

        def delta_chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            chunk = self._envelope("chat.completion.chunk", completion_id)
            chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
            return chunk

        text = ""
        sent = 0
        fail_after = self.app.behaviour.fail_stream_after
        try:
            self._event(exchange, delta_chunk({"role": "assistant", "content": ""}, None))
            if first is not None:
                for piece in itertools.chain([first], pieces):
                    if fail_after is not None and sent >= fail_after:
                        raise RuntimeError("the model worker died mid-stream")
                    if piece:
                        text += piece
                        sent += 1
                        self._event(exchange, delta_chunk({"content": piece}, None))
            self._event(exchange, delta_chunk({}, "stop"))
            usage = self._usage(engine, request, text)
            if include_usage:
                chunk = self._envelope("chat.completion.chunk", completion_id)
                chunk["choices"] = []
                chunk["usage"] = usage
                self._event(exchange, chunk)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            for _ in pieces:  # let the generation thread finish
                pass
            return
        except Exception as error:  # headers are out: report in-band, as vLLM does
            for _ in pieces:  # let the generation thread finish
                pass
            failure = RequestError(500, f"{type(error).__name__}: {error}", kind="server_error")
            exchange.response = failure.body()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(b"data: " + json.dumps(failure.body()).encode() + b"\n\n")
                self.wfile.flush()
            return
        exchange.response = {"content": text, "usage": usage}

    def _event(self, exchange: Exchange, chunk: dict[str, Any]) -> None:
        exchange.chunks.append(chunk)
        self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        self.wfile.flush()

    @staticmethod
    def _usage(engine: TransformersEngine, request: GenerationRequest, text: str) -> dict[str, int]:
        prompt_tokens = int(engine._inputs([request])["attention_mask"].sum())
        tokenizer = engine.loaded.tokenizer
        completion_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }


__all__ = ["Behaviour", "Exchange", "OpenAICompatibleServer", "RequestError", "to_conversation"]
