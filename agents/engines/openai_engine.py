"""MedGemma behind any OpenAI-compatible server: vLLM, llama.cpp, Ollama, TGI, LM Studio, Vertex.

Images travel as ``image_url`` data-URL parts. A tool decision or structured output carries its
JSON schema (already bounded by :func:`~medgraph.agents.protocol.bounded_schema`: digit-limited
number ranges, string lengths, at most ``max_calls`` calls) so the server can guide decoding.
Servers take that schema in different forms and refuse the others, some with a 400, llama.cpp's
with a 500; the engine negotiates: it tries the forms of :data:`SCHEMA_FORMS` strongest first,
steps down when an error names the schema or ``response_format``, remembers per base URL the form
the server took, and where it takes none asks without a schema so the parser and its repair round
do the work. llama.cpp's server refuses ``json_schema`` and drops number ranges from the schemas it
converts itself, so the next form sends medgraph's own grammar (:mod:`~medgraph.agents.gbnf`) in
its ``grammar`` field; a schema that grammar cannot express skips that form for that request
only. Any other failure (nothing listening, a 5xx about something else) is an :class:`EngineError`
naming the URL.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import openai

from medgraph.agents.conversation import Conversation, ImagePart, TextPart
from medgraph.agents.engines.base import Completion, GenerationRequest, truncate_at_stop
from medgraph.agents.gbnf import GBNFError, schema_gbnf
from medgraph.agents.images import image_to_data_url
from medgraph.errors import ConfigurationError, EngineError

SCHEMA_FORMS = ("json_schema", "gbnf", "json_object_schema", "guided_json", "format")
"""How a JSON schema can travel, strongest first: OpenAI/vLLM ``response_format`` json_schema,
a GBNF grammar with the schema's ranges in llama.cpp's ``grammar`` field, llama.cpp's
``{"type": "json_object", "schema": ...}``, vLLM's ``guided_json``, Ollama's ``format``."""

# An error about how the schema travelled names one of these (llama-cpp-python: "response_format.
# type: Input should be 'text' or 'json_object'"; vLLM: "... guided_json ..."; grammar converters:
# "unsupported schema ...").
_SCHEMA_COMPLAINT = re.compile(
    r"response_format|json_schema|json_object|schema|guided|grammar|\bformat\b", re.IGNORECASE
)
_SCHEMA_PARAMS = frozenset({"response_format", "format", "guided_json", "grammar", "extra_body"})

_accepted_forms: dict[str, int] = {}
"""Per base URL, the index into SCHEMA_FORMS of the first form that server took (len: none)."""
_accepted_lock = threading.Lock()


def _server_key(base_url: str) -> str:
    return base_url.rstrip("/")


def remembered_schema_form(base_url: str) -> str | None:
    """The schema form remembered for the server at ``base_url`` (``None``: none, or not probed)."""
    with _accepted_lock:
        index = _accepted_forms.get(_server_key(base_url))
    return SCHEMA_FORMS[index] if index is not None and index < len(SCHEMA_FORMS) else None


def forget_schema_forms(base_url: str | None = None) -> None:
    """Forget what one server (or, with no URL, every server) took, so the next call probes again;
    for a server that was upgraded or replaced at the same address."""
    with _accepted_lock:
        if base_url is None:
            _accepted_forms.clear()
        else:
            _accepted_forms.pop(_server_key(base_url), None)


def is_schema_refusal(error: openai.APIStatusError) -> bool:
    """Whether an HTTP error refuses the way the schema was sent, rather than the request itself.

    A 4xx or 5xx counts when its message or ``param`` names ``response_format``, the schema,
    ``guided_json``, ``format`` or a grammar; auth, unknown-model, rate-limit and other server
    errors do not.
    """
    if error.status_code in (401, 403, 404, 408, 429) or error.status_code < 400:
        return False
    body = error.body
    if isinstance(body, Mapping):
        inner = body.get("error")
        fields = inner if isinstance(inner, Mapping) else body
        if fields.get("param") in _SCHEMA_PARAMS:
            return True
    return bool(_SCHEMA_COMPLAINT.search(_server_message(error)))


def _schema_arguments(form: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The ``chat.completions.create`` arguments that carry ``schema`` in ``form``."""
    if form == "json_schema":
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "decision", "schema": schema},
            }
        }
    if form == "gbnf":
        return {"extra_body": {"grammar": schema_gbnf(schema)}}
    if form == "json_object_schema":
        return {"response_format": {"type": "json_object", "schema": schema}}
    return {"extra_body": {"guided_json" if form == "guided_json" else "format": schema}}


class OpenAIEngine:
    """Sends Gemma conversations to an OpenAI-compatible chat-completions endpoint."""

    name = "openai"
    supports_images = True
    json_chars_per_token = 2.0
    """The server's tokenizer is unknown: decision budgets assume short tokens."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None,
        api_key: str | None = None,
        timeout: float = 120.0,
        temperature: float = 0.0,
        max_retries: int = 0,
    ) -> None:
        """Connect lazily to ``base_url`` (e.g. ``http://localhost:8000/v1``)."""
        if not base_url:
            raise ConfigurationError(
                "engine 'openai' needs base_url (e.g. http://localhost:8000/v1 for vLLM); "
                "set MEDGRAPH_MODELS__BASE_URL or pass base_url="
            )
        self.model_id = model
        self.base_url = base_url
        self.temperature = temperature
        self.timeout = timeout
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            timeout=timeout,
            max_retries=max_retries,
        )

    @staticmethod
    def to_messages(conversation: Conversation) -> list[dict[str, Any]]:
        """OpenAI chat messages: ``user``/``assistant`` roles, images as data-URL parts."""
        messages: list[dict[str, Any]] = []
        for turn in conversation.turns:
            role = "assistant" if turn.role == "model" else "user"
            if any(isinstance(p, ImagePart) for p in turn.parts):
                content: list[dict[str, Any]] = []
                for part in turn.parts:
                    if isinstance(part, TextPart):
                        content.append({"type": "text", "text": part.text})
                    else:
                        url = image_to_data_url(part.image)
                        content.append({"type": "image_url", "image_url": {"url": url}})
                messages.append({"role": role, "content": content})
            else:
                messages.append({"role": role, "content": turn.text})
        return messages

    def _request(self, request: GenerationRequest, stream: bool) -> Any:
        kwargs: dict[str, Any] = {
            "model": self.model_id,
            "messages": self.to_messages(request.conversation),
            "max_tokens": request.max_new_tokens,
            "temperature": self.temperature,
            "stream": stream,
        }
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.json_schema is None:
            return self._create(kwargs)
        # Try from the strongest form this server took before; remember the first it takes.
        key = _server_key(self.base_url)
        with _accepted_lock:
            start = _accepted_forms.get(key, 0)
        unexpressed: int | None = None  # the first form this schema could not be written in
        for index in range(start, len(SCHEMA_FORMS)):
            try:
                arguments = _schema_arguments(SCHEMA_FORMS[index], request.json_schema)
            except GBNFError:
                unexpressed = index if unexpressed is None else unexpressed
                continue
            try:
                response = self._client.chat.completions.create(**kwargs, **arguments)
            except openai.APIStatusError as error:
                if not is_schema_refusal(error):
                    raise self._engine_error(error) from error
                continue
            except openai.APIError as error:
                raise self._engine_error(error) from error
            with _accepted_lock:
                # A form skipped for this schema alone was not refused by the server.
                _accepted_forms[key] = index if unexpressed is None else unexpressed
            return response
        # No form taken: ask without the schema; the parser and its repair round do the work.
        response = self._create(kwargs)
        with _accepted_lock:
            _accepted_forms[key] = len(SCHEMA_FORMS)
        return response

    @property
    def schema_form(self) -> str | None:
        """The schema form this server is sent first (``None``: it took none, or not asked yet)."""
        return remembered_schema_form(self.base_url)

    def _create(self, kwargs: dict[str, Any]) -> Any:
        try:
            return self._client.chat.completions.create(**kwargs)
        except openai.APIError as error:
            raise self._engine_error(error) from error

    def _engine_error(self, error: openai.APIError, during: str = "") -> EngineError:
        """An :class:`EngineError` naming the server, what went wrong and what to check."""
        where = f"{self.base_url}{during}"
        if isinstance(error, openai.APITimeoutError):
            return EngineError(
                f"{where} did not answer within the timeout ({self.timeout:g} s); "
                "raise MEDGRAPH_MODELS__REQUEST_TIMEOUT or check the server"
            )
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__
            reason = f"{type(cause).__name__}: {cause}" if cause else error.message
            return EngineError(
                f"cannot reach {where} ({reason}); is the server running and the URL right?"
            )
        if isinstance(error, openai.APIStatusError):
            hint = ""
            if error.status_code in (401, 403):
                hint = "; check the API key (MEDGRAPH_MODELS__API_KEY)"
            elif error.status_code == 404:
                hint = f"; check the model name {self.model_id!r} and the base URL"
            return EngineError(
                f"{where} answered HTTP {error.status_code}: {_server_message(error)}{hint}"
            )
        return EngineError(f"{where} failed: {_server_message(error)}")

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """One chat-completions call per request (servers batch concurrent requests themselves)."""
        completions = []
        for request in requests:
            response = self._request(request, stream=False)
            if not response.choices:
                raise EngineError(f"{self.base_url} returned no choices")
            text = response.choices[0].message.content or ""
            usage = response.usage
            completions.append(
                Completion(
                    text=truncate_at_stop(text, request.stop),
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0,
                )
            )
        return completions

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Yield the server's streamed deltas (the connection closes if the consumer stops)."""
        with self._request(request, stream=True) as events:
            try:
                for event in events:
                    if event.choices and event.choices[0].delta.content:
                        yield event.choices[0].delta.content
            except openai.APIError as error:
                raise self._engine_error(error, during=" (while streaming)") from error


def _server_message(error: openai.APIError) -> str:
    """The message from the server's error body where it sent one, else the client's."""
    body = error.body
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    return error.message
