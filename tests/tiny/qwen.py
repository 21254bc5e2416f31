"""Tiny random Qwen2-VL, Qwen2.5-VL and Qwen3-VL checkpoints, built from configs at test time.

Each builder writes a complete checkpoint (model weights, byte-level tokenizer, image and
video processors, a minimal Qwen chat template) into a folder with ``save_pretrained``, so
the code under test loads it through the real ``AutoProcessor`` /
``AutoModelForImageTextToText.from_pretrained`` exactly as it would load a hub id.

The models have a 64-wide, 2-layer text tower and a 2-block vision tower (about 1 MB); the
processors use small pixel budgets (4 to 16 merged image tokens) so a forward pass takes
milliseconds on CPU.

Example:
    >>> path = build_tiny_qwen("qwen2_5_vl", tmp_path / "qwen25")  # doctest: +SKIP
    >>> VLMCropper(str(path))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .tokenizers import build_qwen_tokenizer

__all__ = [
    "FAMILIES",
    "QWEN_CHAT_TEMPLATE",
    "build_tiny_qwen",
    "build_tiny_qwen_processor",
    "build_tiny_qwen_model",
    "image_pixel_budget",
]

#: The model_type of every family the builders know.
FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")

#: A minimal Qwen chat template: string or list-of-parts content, images as vision pads.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 2048,
}


def _patch_size(family: str) -> int:
    return 16 if family == "qwen3_vl" else 14


def image_pixel_budget(family: str) -> tuple[int, int]:
    """``(min_pixels, max_pixels)`` of the tiny processors: 4 to 16 merged image tokens."""
    factor = _patch_size(family) * 2
    return 4 * factor * factor, 16 * factor * factor


def build_tiny_qwen_processor(family: str) -> Any:
    """The processor of ``family``: Qwen2VL image + video processors, byte tokenizer, template."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
    )

    _check_family(family)
    patch = _patch_size(family)
    min_pixels, max_pixels = image_pixel_budget(family)
    image_processor = Qwen2VLImageProcessor(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=patch, merge_size=2
    )
    video_processor = Qwen2VLVideoProcessor(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=patch,
        merge_size=2,
    )
    cls = {
        "qwen2_vl": Qwen2VLProcessor,
        "qwen2_5_vl": Qwen2_5_VLProcessor,
        "qwen3_vl": Qwen3VLProcessor,
    }[family]
    return cls(
        image_processor=image_processor,
        tokenizer=build_qwen_tokenizer(),
        video_processor=video_processor,
        chat_template=QWEN_CHAT_TEMPLATE,
    )


def build_tiny_qwen_model(family: str, tokenizer: Any, seed: int = 0) -> Any:
    """A randomly initialised tiny ``*ForConditionalGeneration`` of ``family``."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
    )

    _check_family(family)
    ids = {
        "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }
    special = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    text: dict[str, Any] = {**_TEXT, **special}
    torch.manual_seed(seed)
    if family == "qwen2_vl":
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [4, 6, 6],
        }
        vision = {
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
        }
        config = Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
        model = Qwen2VLForConditionalGeneration(config)
    elif family == "qwen2_5_vl":
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [4, 6, 6],
        }
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        }
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
        model = Qwen2_5_VLForConditionalGeneration(config)
    else:
        text["head_dim"] = 32
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [4, 6, 6],
            "mrope_interleaved": True,
        }
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [1],
        }
        config = Qwen3VLConfig(text_config=text, vision_config=vision, **ids)
        model = Qwen3VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = special["eos_token_id"]
    model.generation_config.pad_token_id = special["pad_token_id"]
    return model.eval()


def build_tiny_qwen(family: str, path: str | Path, seed: int = 0) -> Path:
    """Build a tiny ``family`` checkpoint into ``path`` (model + processor) and return it.

    Args:
        family: ``"qwen2_vl"``, ``"qwen2_5_vl"`` or ``"qwen3_vl"``.
        path: Target folder (created).
        seed: Torch seed of the random initialisation.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    processor = build_tiny_qwen_processor(family)
    model = build_tiny_qwen_model(family, processor.tokenizer, seed=seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny Qwen family {family!r}; choose one of {list(FAMILIES)}")
