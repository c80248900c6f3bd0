"""Build tiny random-weight Gemma 3 checkpoints that load exactly like MedGemma.

The multimodal one (``Gemma3ForConditionalGeneration``: SigLIP vision tower, projector, text model)
stands in for ``google/medgemma-4b-it``; the text-only one (``Gemma3ForCausalLM``) for
``google/medgemma-27b-text-it``. Both are saved with a real Gemma-style tokenizer (BPE with byte
fallback, trained here on a few sentences, Gemma's special tokens at their roles), a Gemma chat
template and, for the multimodal one, a processor config — so they go through the same
``from_pretrained`` calls a user's checkpoint does.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import trainers
from transformers import (
    Gemma3Config,
    Gemma3ForCausalLM,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    Gemma3TextConfig,
    GemmaTokenizer,
    SiglipVisionConfig,
)

from medgraph.agents.gemma_template import GEMMA_CHAT_TEMPLATE

SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
    "<unused94>",
    "<unused95>",
]

_TRAINING_TEXT = [
    '{"tool_calls": [{"name": "search_literature", "arguments": {"query": "aspirin"}}]}',
    '{"answer": "Metformin lowers hepatic glucose output [1]."}',
    "What does the chest radiograph show? Cardiomegaly and no focal consolidation.",
    "Randomized controlled trial of statins in patients with chronic kidney disease.",
    "The estimated glomerular filtration rate was 45 mL/min/1.73 m2 (CKD stage 3a).",
    "Ignore nothing; answer with citations such as [1], [2] and [3].",
    "0123456789 {}[]():;,.\"'-_+=*/<>?!",
]

IMAGE_SIZE = 64
PATCH_SIZE = 8
MM_TOKENS_PER_IMAGE = 16


def build_tokenizer(vocab_size: int = 600) -> GemmaTokenizer:
    """A Gemma tokenizer (byte-fallback BPE, ``▁`` spaces) trained on a few medical sentences."""
    tokenizer = GemmaTokenizer()
    alphabet = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + alphabet,
        show_progress=False,
    )
    tokenizer._tokenizer.train_from_iterator(_TRAINING_TEXT * 20, trainer=trainer)
    tokenizer = GemmaTokenizer(
        vocab=tokenizer._tokenizer.get_vocab(),
        merges=[
            tuple(pair) for pair in json.loads(tokenizer._tokenizer.to_str())["model"]["merges"]
        ],
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
            "sot_token": "<start_of_turn>",
            "eot_token": "<end_of_turn>",
        },
    )
    tokenizer.add_special_tokens(
        {"extra_special_tokens": ["<start_of_turn>", "<end_of_turn>", "<unused94>", "<unused95>"]},
        replace_extra_special_tokens=False,
    )
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    return tokenizer


def _text_config(tokenizer: GemmaTokenizer) -> Gemma3TextConfig:
    return Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,
        max_position_embeddings=32768,
        sliding_window=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")],
    )


def _finish(model: torch.nn.Module, folder: Path, tokenizer: GemmaTokenizer) -> None:
    model.generation_config.eos_token_id = [
        tokenizer.eos_token_id,
        tokenizer.convert_tokens_to_ids("<end_of_turn>"),
    ]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False
    model.save_pretrained(folder)


def save_multimodal(
    folder: Path,
    tokenizer: GemmaTokenizer,
    text: Gemma3TextConfig,
    vision: SiglipVisionConfig,
) -> Gemma3ForConditionalGeneration:
    """Save a random Gemma3ForConditionalGeneration over these configs, with its processor."""
    config = Gemma3Config(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        mm_tokens_per_image=MM_TOKENS_PER_IMAGE,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(config).eval()
    _finish(model, folder, tokenizer)
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(
            size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        ),
        tokenizer=tokenizer,
        chat_template=GEMMA_CHAT_TEMPLATE,
        image_seq_length=MM_TOKENS_PER_IMAGE,
    )
    processor.save_pretrained(folder)
    return model


def build_multimodal(folder: Path, seed: int = 0) -> Path:
    """Save a tiny Gemma3ForConditionalGeneration and processor (MedGemma 4B's shape)."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        vision_use_head=False,
    )
    save_multimodal(folder, tokenizer, _text_config(tokenizer), vision)
    return folder


def build_text_only(folder: Path, seed: int = 1) -> Path:
    """Save a tiny Gemma3ForCausalLM + tokenizer (MedGemma 27B text's shape) to ``folder``."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    model = Gemma3ForCausalLM(_text_config(tokenizer)).eval()
    _finish(model, folder, tokenizer)
    tokenizer.save_pretrained(folder)
    return folder
