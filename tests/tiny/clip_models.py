"""Tiny random scorer models (CLIP, SigLIP, SigLIP2, sentence-transformers bi-encoders and a
multimodal cross-encoder), built from configs and saved with ``save_pretrained`` so that
tests load them through the real ``from_pretrained`` path, exactly as a hub id would be.

Every builder takes a folder, writes the model there and returns the folder. Sizes follow
ENVIRONMENT.md: hidden 32, 2 layers, 2 heads, patch 32, projection 32, image 64.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.tiny.tokenizers import build_clip_tokenizer, build_qwen_tokenizer

__all__ = [
    "IMAGE_SIZE",
    "TEXT_POSITIONS",
    "build_tiny_clip",
    "build_tiny_siglip",
    "build_tiny_siglip2",
    "has_siglip2",
    "build_tiny_st_clip",
    "build_tiny_st_clip_legacy",
    "build_tiny_st_text",
    "build_tiny_vl_cross_encoder",
    "smooth_image",
]

IMAGE_SIZE = 64
PATCH = 32
HIDDEN = 32
TEXT_POSITIONS = 16


def _text_kwargs(tok: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tok),
        "hidden_size": HIDDEN,
        "intermediate_size": 2 * HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": TEXT_POSITIONS,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }


def _vision_kwargs() -> dict[str, Any]:
    return {
        "hidden_size": HIDDEN,
        "intermediate_size": 2 * HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH,
    }


def build_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random CLIP (centre-crop processor: shortest edge 64, crop 64x64, bicubic)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = build_clip_tokenizer(model_max_length=TEXT_POSITIONS)
    config = CLIPConfig(
        text_config=_text_kwargs(tok), vision_config=_vision_kwargs(), projection_dim=32
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tok)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_siglip(folder: Path, seed: int = 0) -> Path:
    """A random SigLIP (squashing processor: 64x64, bicubic, mean/std 0.5)."""
    import torch
    from transformers import (
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
        SiglipProcessor,
        SiglipTextConfig,
        SiglipVisionConfig,
    )

    tok = build_clip_tokenizer(model_max_length=TEXT_POSITIONS)
    text = {**_text_kwargs(tok), "projection_size": HIDDEN}
    config = SiglipConfig(
        text_config=SiglipTextConfig(**text).to_dict(),
        vision_config=SiglipVisionConfig(**_vision_kwargs()).to_dict(),
    )
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    image_processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = SiglipProcessor(image_processor=image_processor, tokenizer=tok)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def has_siglip2() -> bool:
    """Whether the installed transformers ships SigLIP2."""
    import transformers

    return hasattr(transformers, "Siglip2Model") and hasattr(transformers, "Siglip2Processor")


def build_tiny_siglip2(folder: Path, seed: int = 0) -> Path:
    """A random SigLIP2 (NaFlex processor: patch 32, at most 4 patches = a 2x2 grid)."""
    import torch
    from transformers import (
        Siglip2Config,
        Siglip2ImageProcessor,
        Siglip2Model,
        Siglip2Processor,
        Siglip2TextConfig,
        Siglip2VisionConfig,
    )

    tok = build_clip_tokenizer(model_max_length=TEXT_POSITIONS)
    text = {**_text_kwargs(tok), "projection_size": HIDDEN}
    vision = {k: v for k, v in _vision_kwargs().items() if k != "image_size"}
    config = Siglip2Config(
        text_config=Siglip2TextConfig(**text).to_dict(),
        vision_config=Siglip2VisionConfig(**vision, num_patches=4).to_dict(),
    )
    torch.manual_seed(seed)
    model = Siglip2Model(config).eval()
    image_processor = Siglip2ImageProcessor(patch_size=PATCH, max_num_patches=4)
    processor = Siglip2Processor(image_processor=image_processor, tokenizer=tok)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_st_clip(folder: Path, clip_folder: Path) -> Path:
    """A sentence-transformers bi-encoder wrapping a tiny CLIP folder.

    sentence-transformers >= 5.4 wraps CLIP in its generic ``Transformer`` module, which maps
    text to ``get_text_features`` and images to ``get_image_features``.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer

    model = SentenceTransformer(modules=[Transformer(str(clip_folder))], device="cpu")
    model.save(str(folder))
    return folder


def build_tiny_st_clip_legacy(folder: Path, clip_folder: Path) -> Path:
    """The layout of the hub's ``sentence-transformers/clip-ViT-B-32``: one legacy
    ``sentence_transformers.models.CLIPModel`` module holding a transformers CLIP folder."""
    import json
    import shutil

    shutil.copytree(clip_folder, folder / "0_CLIPModel")
    modules = [
        {
            "idx": 0,
            "name": "0",
            "path": "0_CLIPModel",
            "type": "sentence_transformers.models.CLIPModel",
        }
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder


def build_tiny_st_text(folder: Path, seed: int = 0) -> Path:
    """A text-only sentence-transformers model (tiny BERT + mean pooling, byte tokenizer)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel

    tok = build_qwen_tokenizer()
    torch.manual_seed(seed)
    bert = BertModel(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=HIDDEN,
            intermediate_size=2 * HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
        )
    )
    hf_folder = folder / "hf"
    bert.save_pretrained(hf_folder)
    tok.save_pretrained(hf_folder)
    model = SentenceTransformer(
        modules=[Transformer(str(hf_folder)), Pooling(HIDDEN, "mean")], device="cpu"
    )
    st_folder = folder / "st"
    model.save(str(st_folder))
    return st_folder


# A chat template that renders the cross-encoder's ``query`` / ``document`` roles and the
# structured content (text and image items) that sentence-transformers produces for pairs.
VL_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] }}\n"
    "{%- if message['content'] is string %}{{ message['content'] }}"
    "{%- else %}{%- for item in message['content'] %}"
    "{%- if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif item['type'] == 'text' %}{{ item['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}<|im_end|>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif -%}"
)


def build_tiny_vl_cross_encoder(folder: Path, seed: int = 0) -> Path:
    """A multimodal generative cross-encoder (the Qwen-VL reranker recipe), tiny and random.

    A tiny Qwen2-VL runs as a sentence-transformers ``any-to-any`` ``Transformer`` followed by
    ``LogitScore`` (logit of "yes" minus logit of "no" at the last position), saved with
    ``CrossEncoder.save`` so that ``CrossEncoder(folder)`` reloads it.
    """
    import torch
    from sentence_transformers import CrossEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.cross_encoder.modules.logit_score import LogitScore
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = build_qwen_tokenizer()
    tok.add_tokens(["yes", "no"])
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("yes", "no", "<|im_end|>")}
    pixels = {"shortest_edge": 28 * 28, "longest_edge": 56 * 56}
    geometry = {"patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=pixels, **geometry),
        video_processor=Qwen2VLVideoProcessor(size=pixels, **geometry),
        tokenizer=tok,
        chat_template=VL_CHAT_TEMPLATE,
    )
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 2048,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [4, 6, 6],
            },
            "bos_token_id": None,
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    vlm = Qwen2VLForConditionalGeneration(config).eval()
    hf_folder = folder / "hf"
    vlm.save_pretrained(hf_folder)
    processor.save_pretrained(hf_folder)
    transformer = Transformer(
        str(hf_folder),
        transformer_task="any-to-any",
        processing_kwargs={"chat_template": {"add_generation_prompt": True}},
    )
    score = LogitScore(true_token_id=ids["yes"], false_token_id=ids["no"])
    model = CrossEncoder(modules=[transformer, score], device="cpu")
    ce_folder = folder / "ce"
    model.save(str(ce_folder))
    return ce_folder


def smooth_image(width: int, height: int, seed: int = 0) -> Any:
    """A smooth RGB test image (gradients and a disc) whose content differs by ``seed``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    freq = rng.uniform(1.0, 3.0, size=3)
    chans = [
        0.5 + 0.5 * np.sin(freq[c] * np.pi * (xx / width + yy / height) + phase[c])
        for c in range(3)
    ]
    arr = np.stack(chans, axis=-1)
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
    radius = 0.25 * min(width, height)
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 < radius**2
    arr[disc] = rng.uniform(0, 1, size=3)
    return Image.fromarray((arr * 255).round().astype(np.uint8))
