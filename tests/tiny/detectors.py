"""Tiny random open-vocabulary detectors (OWL-ViT, OWLv2, Grounding DINO), built offline.

Each builder creates a randomly initialised model (~1 MB) and its processor, saves both
with ``save_pretrained`` into ``folder`` and returns the folder, so tests load them
exactly as users load a hub id: ``AutoProcessor`` / ``AutoModelForZeroShotObjectDetection``
``.from_pretrained(folder)``. Weights are seeded, so a build is reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.tiny.tokenizers import build_clip_tokenizer

__all__ = [
    "OWL_IMAGE_SIZE",
    "OWL_MAX_TEXT_LEN",
    "build_bert_tokenizer",
    "build_owlvit",
    "build_owlv2",
    "build_grounding_dino",
]

#: Square input side of the tiny OWL processors (patch 32 -> 3 x 3 = 9 boxes).
OWL_IMAGE_SIZE = 96
#: The OWL processors pad every query to this many tokens.
OWL_MAX_TEXT_LEN = 48


def _owl_configs(tokenizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": OWL_MAX_TEXT_LEN,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": OWL_IMAGE_SIZE,
        "patch_size": 32,
    }
    return text, vision


def _tame_box_head(model: Any) -> None:
    """Shrink the last box-head layer so the random boxes are the patch-grid prior plus a
    little jitter (a fully random head predicts degenerate zero-width boxes)."""
    import torch

    last = model.box_head.dense2
    with torch.no_grad():
        last.weight.normal_(0.0, 0.02)
        last.bias.zero_()


def _save(model: Any, processor: Any, folder: str | Path) -> Path:
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_owlvit(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny random OWL-ViT detector and its processor into ``folder``."""
    import torch
    from transformers import (
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
        OwlViTProcessor,
    )

    tokenizer = build_clip_tokenizer(model_max_length=OWL_MAX_TEXT_LEN)
    text, vision = _owl_configs(tokenizer)
    config = OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = OwlViTForObjectDetection(config).eval()
        _tame_box_head(model)
    side = {"height": OWL_IMAGE_SIZE, "width": OWL_IMAGE_SIZE}
    image_processor = OwlViTImageProcessor(size=side, crop_size=side)
    processor = OwlViTProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(model, processor, folder)


def build_owlv2(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny random OWLv2 detector and its processor (pads to a square) into ``folder``."""
    import torch
    from transformers import (
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    tokenizer = build_clip_tokenizer(model_max_length=OWL_MAX_TEXT_LEN)
    text, vision = _owl_configs(tokenizer)
    config = Owlv2Config(text_config=text, vision_config=vision, projection_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Owlv2ForObjectDetection(config).eval()
        _tame_box_head(model)
    image_processor = Owlv2ImageProcessor(size={"height": OWL_IMAGE_SIZE, "width": OWL_IMAGE_SIZE})
    processor = Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(model, processor, folder)


def build_bert_tokenizer(model_max_length: int = 64) -> Any:
    """A lower-casing BertTokenizer over characters and ``##`` characters.

    Grounding DINO's code relies on BERT's ids: ``[CLS]`` 101, ``[SEP]`` 102, ``.`` 1012 and
    ``?`` 1029, so the vocabulary is laid out to put them there.
    """
    from transformers import BertTokenizer

    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)]
    tokens += ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    tokens += chars + ["##" + c for c in chars]
    for token, index in ((".", 1012), ("?", 1029)):
        while len(tokens) < index:
            tokens.append(f"[unused{len(tokens)}]")
        tokens.append(token)
    tokens += [",", "!", "'", "-"]
    vocab = {t: i for i, t in enumerate(tokens)}
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=model_max_length)


def build_grounding_dino(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny random Grounding DINO (Swin + BERT) and its processor into ``folder``."""
    import torch
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    tokenizer = build_bert_tokenizer()
    backbone = {
        "model_type": "swin",
        "image_size": 64,
        "patch_size": 4,
        "embed_dim": 8,
        "depths": [1, 1, 1, 1],
        "num_heads": [1, 1, 1, 1],
        "window_size": 2,
        "out_indices": [2, 3, 4],
    }
    text = {
        "model_type": "bert",
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 37,
        "max_position_embeddings": 64,
    }
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=10,
        max_text_len=32,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(config).eval()
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 192})
    processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(model, processor, folder)
