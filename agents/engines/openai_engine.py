"""MedGemma behind any OpenAI-compatible server: vLLM, Ollama, TGI, LM Studio, Vertex endpoints.

Images travel as ``image_url`` data-URL parts. Where the server accepts a JSON schema for guided
decoding (vLLM's ``response_format`` of type ``json_schema``), the decision schema is sent with the
request; a server that rejects it is remembered and asked again without, and the same parser and
repair round then do the work.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import openai

from medgraph.agents.conversation import Conversation, ImagePart, TextPart
from medgraph.agents.engines.base import Completion, GenerationRequest, truncate_at_stop
from medgraph.agents.images import image_to_data_url
from medgraph.errors import ConfigurationError, EngineError


class OpenAIEngine:
    """Sends Gemma conversations to an OpenAI-compatible chat-completions endpoint."""

    name = "openai"
    supports_images = True

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
        self.schema_supported = True
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
        if request.json_schema is not None and self.schema_supported:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "decision", "schema": request.json_schema},
            }
        try:
            return self._client.chat.completions.create(**kwargs)
        except openai.BadRequestError as error:
            if "response_format" in kwargs:
                # The server does not do guided decoding; parse and repair instead.
                self.schema_supported = False
                return self._request(request, stream)
            raise EngineError(f"{self.base_url} rejected the request: {error}") from error
        except openai.APITimeoutError as error:
            raise EngineError(
                f"{self.base_url} did not answer within the timeout; "
                "raise MEDGRAPH_MODELS__REQUEST_TIMEOUT or check the server"
            ) from error
        except openai.APIStatusError as error:
            raise EngineError(
                f"{self.base_url} answered HTTP {error.status_code}: {error.message}"
            ) from error
        except openai.APIConnectionError as error:
            raise EngineError(
                f"cannot reach {self.base_url}: {error}; is the server running?"
            ) from error

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
        """Yield the server's streamed deltas."""
        try:
            for event in self._request(request, stream=True):
                if event.choices and event.choices[0].delta.content:
                    yield event.choices[0].delta.content
        except openai.APIError as error:
            raise EngineError(f"stream from {self.base_url} failed: {error}") from error
