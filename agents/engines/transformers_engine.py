"""Local MedGemma weights through Hugging Face transformers.

Multimodal checkpoints (``google/medgemma-4b-it``) load with ``AutoModelForImageTextToText`` and
``AutoProcessor``; text-only ones (``google/medgemma-27b-text-it``) with ``AutoModelForCausalLM``
and ``AutoTokenizer``. bf16 on CUDA, fp32 on CPU unless told otherwise; optional 4/8-bit through
bitsandbytes. Loaded models live in a process-wide cache keyed by (model, dtype, device map,
quantisation), so two roles naming the same checkpoint share one copy.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    LogitsProcessorList,
    TextIteratorStreamer,
)

from medgraph.agents.conversation import Conversation
from medgraph.agents.engines.base import Completion, GenerationRequest, truncate_at_stop
from medgraph.agents.engines.grammar_output import grammar_output_layer
from medgraph.agents.engines.prefix_cache import (
    PrefillTimeout,
    PrefixCache,
    cache_argument,
    prefill_within,
)
from medgraph.agents.gemma_template import ensure_chat_template
from medgraph.agents.grammar import GrammarCompiler, shared_compiler
from medgraph.agents.protocol import DEFAULT_CHARS_PER_TOKEN
from medgraph.errors import ConfigurationError, EngineError, ModelLoadError

HUB_TERMS_HINT = (
    "MedGemma weights are gated: accept the Health AI Developer Foundations terms on the model's "
    "Hugging Face page, run `hf auth login` (or set HF_TOKEN), or pass a local folder that holds "
    "the checkpoint"
)
_END_MARKERS = ("<end_of_turn>", "<eos>")
# A typical decision, to measure how many characters of decision JSON one token carries.
_SAMPLE_DECISION = (
    '{"tool_calls": [{"name": "search_literature", "arguments": {"query": "statins after '
    'ischaemic stroke in older adults", "k": 5}}, {"name": "body_mass_index", "arguments": '
    '{"weight_kg": 81.5, "height_cm": 177}}]}'
)
_DROP_MARKERS = ("<pad>", "<bos>")


@dataclass(frozen=True)
class ModelKey:
    """What makes two loaded models interchangeable."""

    model: str
    dtype: str
    device_map: str
    quantization: str


@dataclass
class LoadedModel:
    """A model with its tokenizer (and processor, for multimodal checkpoints)."""

    key: ModelKey
    model: Any
    tokenizer: Any
    processor: Any | None
    load_seconds: float
    _grammar: GrammarCompiler | None = field(default=None, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    prefixes: PrefixCache = field(default_factory=PrefixCache, repr=False)

    @property
    def multimodal(self) -> bool:
        """Whether the checkpoint has a vision tower."""
        return self.processor is not None

    @property
    def device(self) -> torch.device:
        """Where inputs must go."""
        return torch.device(self.model.device)

    @property
    def grammar(self) -> GrammarCompiler:
        """The llguidance grammar compiler for this tokenizer, built on first use (shared by every
        model with the same vocabulary)."""
        if self._grammar is None:
            config = self.model.config
            text_config = getattr(config, "text_config", None) or config
            self._grammar = shared_compiler(
                self.tokenizer, text_config.vocab_size, self.stop_token_ids
            )
        return self._grammar

    @functools.cached_property
    def stop_token_ids(self) -> list[int]:
        """Tokens that end a reply: ``<eos>`` and ``<end_of_turn>``."""
        return [
            i
            for i in (
                self.tokenizer.eos_token_id,
                self.tokenizer.convert_tokens_to_ids("<end_of_turn>"),
            )
            if isinstance(i, int) and i != self.tokenizer.unk_token_id
        ]


_CACHE: dict[ModelKey, LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def resolve_dtype(name: str) -> torch.dtype:
    """``auto`` means bf16 on CUDA and fp32 on CPU; other names map to torch dtypes."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if name not in dtypes:
        raise ConfigurationError(f"unknown dtype {name!r}; use one of auto, {', '.join(dtypes)}")
    return dtypes[name]


def is_multimodal(model: str) -> bool:
    """Whether the checkpoint at ``model`` (Hub id, folder or GGUF file) has a vision tower."""
    config = _load_config(model)
    return getattr(config, "vision_config", None) is not None


def is_gguf(model: str) -> bool:
    """Whether ``model`` names a GGUF file."""
    return model.lower().endswith(".gguf")


def _source(model: str) -> tuple[str, dict[str, Any]]:
    """Where ``from_pretrained`` reads ``model`` and with which extra arguments.

    A GGUF file loads from its folder with ``gguf_file=``: transformers dequantises the weights
    to ``dtype`` on load (the text model only; GGUF files keep a vision tower in a separate file).
    """
    if not is_gguf(model):
        return model, {}
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"GGUF file {model!r} does not exist; give the path of a .gguf file")
    try:
        import gguf  # noqa: F401
    except ImportError as error:
        raise ConfigurationError(
            f"loading the GGUF file {model!r} needs the gguf package: pip install 'medgraph[gguf]'"
        ) from error
    return str(path.parent), {"gguf_file": path.name}


def _reading(model: str) -> contextlib.AbstractContextManager[None]:
    """The block in which transformers reads ``model``: a GGUF file is parsed once in it."""
    if not is_gguf(model):
        return contextlib.nullcontext()
    _source(model)  # a missing file or a missing gguf package: the error that says so
    from medgraph.agents.engines.gguf_reading import shared_gguf_reader

    return shared_gguf_reader()


def _load_config(model: str) -> Any:
    source, extra = _source(model)
    try:
        with _reading(model):
            return AutoConfig.from_pretrained(source, **extra)
    except (OSError, ValueError) as error:
        where = "folder" if Path(model).exists() else "model id"
        raise ModelLoadError(
            f"cannot load {where} {model!r}: {str(error).splitlines()[0]}. {HUB_TERMS_HINT}"
        ) from error


def _quantization_config(quantization: str) -> Any:
    if quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as error:
        raise ConfigurationError(
            f"quantization {quantization!r} needs bitsandbytes: pip install 'medgraph[quant]'"
        ) from error
    if not torch.cuda.is_available():
        raise ConfigurationError(f"quantization {quantization!r} needs a CUDA GPU; use 'none'")
    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_type="nf4"
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def load_model(
    model: str, dtype: str = "auto", device_map: str = "auto", quantization: str = "none"
) -> LoadedModel:
    """Load (or fetch from the process cache) the checkpoint ``model``."""
    key = ModelKey(model, dtype, device_map, quantization)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        started = time.perf_counter()
        with _reading(model):
            loaded = _load_uncached(key, started)
        _CACHE[key] = loaded
        return loaded


def _load_uncached(key: ModelKey, started: float) -> LoadedModel:
    """Read ``key.model``'s config, tokenizer (or processor) and weights."""
    config = _load_config(key.model)
    kwargs: dict[str, Any] = {
        "config": config,  # read once: a GGUF file's metadata takes seconds to parse
        "dtype": resolve_dtype(key.dtype),
        "device_map": key.device_map,
    }
    quantization_config = _quantization_config(key.quantization)
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    source, extra = _source(key.model)
    try:
        if getattr(config, "vision_config", None) is not None:
            processor = AutoProcessor.from_pretrained(source, **extra)
            tokenizer = processor.tokenizer
            network = AutoModelForImageTextToText.from_pretrained(source, **extra, **kwargs)
        else:
            processor = None
            tokenizer = AutoTokenizer.from_pretrained(source, **extra)
            network = AutoModelForCausalLM.from_pretrained(source, **extra, **kwargs)
    except OSError as error:
        raise ModelLoadError(
            f"cannot load weights of {key.model!r}: {str(error).splitlines()[0]}. {HUB_TERMS_HINT}"
        ) from error
    network.eval()
    ensure_chat_template(tokenizer)  # GGUF files and base models may ship without one
    tokenizer.padding_side = "left"
    return LoadedModel(key, network, tokenizer, processor, time.perf_counter() - started)


def cached_models() -> list[ModelKey]:
    """Keys of the models loaded in this process."""
    with _CACHE_LOCK:
        return list(_CACHE)


def clear_model_cache() -> None:
    """Forget every loaded model (frees memory once no instance holds one)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def clean_completion(text: str) -> str:
    """Cut a decoded completion at the end of the model turn and drop padding markers."""
    for marker in _END_MARKERS:
        position = text.find(marker)
        if position != -1:
            text = text[:position]
    for marker in _DROP_MARKERS:
        text = text.replace(marker, "")
    return text.strip()


class TransformersEngine:
    """Runs a MedGemma checkpoint in this process."""

    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        device_map: str = "auto",
        quantization: str = "none",
        temperature: float = 0.0,
        reuse_prefix: bool = True,
    ) -> None:
        """Load ``model`` (or reuse the process-wide cached copy).

        ``reuse_prefix``: keep the caches of the last prompts and prefill only the part of a new
        prompt that no stored one starts with (see ``prefix_cache``).
        """
        self.model_id = model
        self.loaded = load_model(model, dtype, device_map, quantization)
        self.temperature = temperature
        self.reuse_prefix = reuse_prefix

    @functools.cached_property
    def json_chars_per_token(self) -> float:
        """Characters of decision JSON per token of this tokenizer (for decision budgets)."""
        count = len(self.loaded.tokenizer(_SAMPLE_DECISION, add_special_tokens=False)["input_ids"])
        return min(DEFAULT_CHARS_PER_TOKEN, len(_SAMPLE_DECISION) / max(1, count))

    @property
    def supports_images(self) -> bool:
        """Multimodal checkpoints read images; text-only ones do not."""
        return self.loaded.multimodal

    def _prompt(self, conversation: Conversation) -> str:
        messages = conversation.to_template_messages()
        if not self.loaded.multimodal:
            for message in messages:
                message["content"] = "\n\n".join(
                    c["text"] for c in message["content"] if c["type"] == "text"
                )
        owner = self.loaded.processor or self.loaded.tokenizer
        return str(owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    def _inputs(self, requests: Sequence[GenerationRequest]) -> dict[str, Any]:
        prompts = [self._prompt(r.conversation) for r in requests]
        images = [[i.image for i in r.conversation.images] for r in requests]
        if any(images):
            if not self.loaded.multimodal:
                raise EngineError(
                    f"model {self.model_id!r} is text-only and cannot read images; "
                    "send images to a multimodal checkpoint (the image_model role)"
                )
            assert self.loaded.processor is not None
            inputs = self.loaded.processor(
                text=prompts,
                images=images,
                padding=True,
                add_special_tokens=False,
                return_tensors="pt",
            )
        else:
            inputs = self.loaded.tokenizer(
                prompts, padding=True, add_special_tokens=False, return_tensors="pt"
            )
        dtype = self.loaded.model.dtype
        return {
            k: (
                v.to(self.loaded.device, dtype=dtype)
                if k == "pixel_values"
                else v.to(self.loaded.device)
            )
            for k, v in inputs.items()
        }

    def _generation_kwargs(
        self, max_new_tokens: int, seconds_left: float | None = None
    ) -> dict[str, Any]:
        """``generate`` keywords: budget, greedy or sampled, stop tokens, time left."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": self.temperature > 0,
            "pad_token_id": self.loaded.tokenizer.pad_token_id,
            # End at the end of the model's turn as well as at <eos>: checkpoints converted from
            # GGUF (and some base models) list only <eos>, and a reply would run on past its turn.
            "eos_token_id": self.loaded.stop_token_ids,
        }
        if seconds_left is not None:
            kwargs["max_time"] = seconds_left
        if self.temperature > 0:
            kwargs["temperature"] = self.temperature
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Complete all requests; rows with images and rows without run as two padded batches."""
        if not requests:
            return []
        with_images = [i for i, r in enumerate(requests) if r.conversation.images]
        groups = [
            g for g in (with_images, [i for i in range(len(requests)) if i not in with_images]) if g
        ]
        results: list[Completion | None] = [None] * len(requests)
        for group in groups:
            batch = [requests[i] for i in group]
            for index, completion in zip(group, self._generate_batch(batch), strict=True):
                results[index] = completion
        return [r for r in results if r is not None]

    def _generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        inputs = self._inputs(requests)
        budget = max(r.max_new_tokens for r in requests)
        deadlines = [r.deadline for r in requests if r.deadline is not None]
        deadline = min(deadlines) if deadlines else None
        kwargs = self._generation_kwargs(budget)
        output_layer: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if any(r.json_schema is not None for r in requests):
            processor = self.loaded.grammar.processor(
                [r.json_schema for r in requests], [r.max_new_tokens for r in requests]
            )
            kwargs["logits_processor"] = LogitsProcessorList([processor])
            output_layer = grammar_output_layer(self.loaded.model, processor)
        prompt_length = inputs["input_ids"].shape[1]
        model = self.loaded.model
        with self.loaded.lock, torch.inference_mode():
            past = None
            text_only = "pixel_values" not in inputs
            try:
                if deadline is not None and time.time() >= deadline:
                    raise PrefillTimeout("the deadline passed before generation started")
                if text_only and self.reuse_prefix:
                    past = self.loaded.prefixes.past_key_values(
                        model, inputs["input_ids"], inputs["attention_mask"], deadline
                    )
                elif text_only and deadline is not None:
                    past = prefill_within(
                        model, inputs["input_ids"], inputs["attention_mask"], deadline
                    )
            except PrefillTimeout:
                return [
                    Completion("", prompt_tokens=int(mask.sum()), completion_tokens=0)
                    for mask in inputs["attention_mask"]
                ]
            if past is not None:
                kwargs[cache_argument(model)] = past
            if deadline is not None:
                # generate checks this between tokens; the prefill above checked between chunks
                kwargs["max_time"] = max(0.0, deadline - time.time())
            with output_layer:
                output = model.generate(**inputs, **kwargs)
        completions = []
        pad = self.loaded.tokenizer.pad_token_id
        for row, request in enumerate(requests):
            new_tokens = output[row, prompt_length : prompt_length + request.max_new_tokens]
            text = clean_completion(
                self.loaded.tokenizer.decode(new_tokens, skip_special_tokens=False)
            )
            completions.append(
                Completion(
                    text=truncate_at_stop(text, request.stop),
                    prompt_tokens=int(inputs["attention_mask"][row].sum()),
                    completion_tokens=int((new_tokens != pad).sum()),
                )
            )
        return completions

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Yield decoded text as tokens are generated (plain answers; no grammar).

        The pieces add up to exactly what :meth:`generate` returns for the same request.
        """
        yield from trim_stream(self._raw_stream(request))

    def _raw_stream(self, request: GenerationRequest) -> Iterator[str]:
        if request.json_schema is not None:
            yield from (c.text for c in self.generate([request]))
            return
        inputs = self._inputs([request])
        streamer = TextIteratorStreamer(
            self.loaded.tokenizer, skip_prompt=True, skip_special_tokens=False
        )
        kwargs = self._generation_kwargs(request.max_new_tokens, request.seconds_left())
        error: list[BaseException] = []

        def run() -> None:
            try:
                with self.loaded.lock, torch.inference_mode():
                    self.loaded.model.generate(**inputs, **kwargs, streamer=streamer)
            except BaseException as exc:  # surfaced to the consumer below
                error.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        emitted = ""
        stopped_early = False
        for piece in streamer:
            combined = emitted + piece
            cuts = [combined.find(m) for m in (*_END_MARKERS, *request.stop) if m]
            stop_at = min((c for c in cuts if c != -1), default=-1)
            if stop_at != -1:
                tail = _strip_markers(combined[len(emitted) : stop_at])
                if tail:
                    yield tail
                stopped_early = True
                break
            emitted = combined
            if piece:
                yield _strip_markers(piece)
        if stopped_early:
            for _ in streamer:  # drain so the worker can finish
                pass
        worker.join()
        if error:
            raise EngineError(f"generation with {self.model_id!r} failed: {error[0]}") from error[0]


def trim_stream(pieces: Iterator[str]) -> Iterator[str]:
    """Drop leading and trailing whitespace of a streamed text, as ``str.strip`` would."""
    started = False
    pending = ""
    for piece in pieces:
        if not started:
            piece = piece.lstrip()
            if not piece:
                continue
            started = True
        body = piece.rstrip()
        if body:
            yield pending + body
            pending = piece[len(body) :]
        else:
            pending += piece


def _strip_markers(text: str) -> str:
    for marker in _DROP_MARKERS:
        text = text.replace(marker, "")
    return text
