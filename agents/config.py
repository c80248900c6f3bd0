"""Settings owned by the agents package (the ``models`` section of ``medgraph.Settings``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

DEFAULT_IMAGE_MODEL = "google/medgemma-4b-it"
DEFAULT_TEXT_MODEL = "google/medgemma-27b-text-it"

EngineName = Literal["transformers", "openai", "extractive"]
Quantization = Literal["none", "4bit", "8bit"]
DTypeName = Literal["auto", "bfloat16", "float16", "float32"]


class ModelSettings(BaseModel):
    """Which MedGemma checkpoints fill the image and text roles, and how they run.

    ``model = "none"`` (or engine ``extractive``) runs with no LLM at all.
    Environment: ``MEDGRAPH_MODELS__IMAGE_MODEL``, ``MEDGRAPH_MODELS__ENGINE``, ...
    """

    engine: EngineName = "transformers"
    image_model: str = Field(default=DEFAULT_IMAGE_MODEL, description="Hub id or local folder.")
    text_model: str = Field(default=DEFAULT_TEXT_MODEL, description="Hub id or local folder.")
    dtype: DTypeName = Field(default="auto", description="auto: bf16 on CUDA, fp32 on CPU.")
    device_map: str = Field(default="auto")
    quantization: Quantization = "none"
    base_url: str | None = Field(default=None, description="OpenAI-compatible server URL.")
    api_key: str | None = Field(default=None, description="Key for the OpenAI-compatible server.")
    request_timeout: float = Field(default=120.0, gt=0)
    max_new_tokens: int = Field(default=512, ge=1)
    thinking: bool = Field(default=False, description="Ask the model to think silently first.")
