"""The demo world's image tower: a small CNN mapping 64x64 images into MiniLM's space.

Trained LiT-style (the MiniLM text tower is locked) by
:mod:`region_rerank.demo.tower_training`; the shipped weights live in ``weights/`` as
safetensors with a SHA-256 checksum verified on every load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank.checksums import checked_metadata, sha256_of

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHANNELS",
    "INPUT_SIZE",
    "EMBED_DIM",
    "IMAGE_MEAN",
    "IMAGE_STD",
    "WEIGHTS_PATH",
    "build_image_tower",
    "load_image_tower",
    "save_image_tower",
    "sha256_of",
]

INPUT_SIZE = 64
EMBED_DIM = 384  # all-MiniLM-L6-v2
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.25, 0.25, 0.25)
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "image_tower.safetensors"
CHECKSUM_PATH = WEIGHTS_PATH.with_suffix(".sha256")
CHANNELS = (32, 64, 128, 192)


def build_image_tower(width: tuple[int, ...] = CHANNELS, dim: int = EMBED_DIM) -> torch.nn.Module:
    """A fresh (random) tower: a stride-2 stem, conv-BN-ReLU blocks each followed by
    max-pooling, global average pool, linear projection to ``dim`` (about 0.7 M
    parameters)."""
    from torch import nn

    layers: list[nn.Module] = [
        nn.Conv2d(3, width[0], 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(width[0]),
        nn.ReLU(inplace=True),
    ]
    c_in = width[0]
    for c_out in width[1:]:
        layers += [
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        c_in = c_out
    layers += [
        nn.Conv2d(c_in, c_in, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c_in, dim),
    ]
    return nn.Sequential(*layers)


def save_image_tower(model: torch.nn.Module, path: str | Path, meta: dict[str, Any]) -> str:
    """Save ``model`` as safetensors (metadata as JSON strings) plus ``.sha256``; return
    the checksum."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={k: json.dumps(v) for k, v in meta.items()})
    digest = sha256_of(path)
    path.with_suffix(".sha256").write_text(digest + "\n")
    return digest


def load_image_tower(path: str | Path | None = None, *, verify: bool = True) -> torch.nn.Module:
    """Load the tower (the shipped weights by default) in eval mode, with the channel widths
    recorded in its metadata (``config.width``; the default widths when absent).

    Raises:
        ConfigError: Missing weights, or a checksum mismatch (corrupted / tampered file).
    """
    from safetensors.torch import load_file

    path = Path(path) if path is not None else WEIGHTS_PATH
    hint = "`python scripts/train_demo_tower.py`"
    meta = checked_metadata(path, "demo image-tower weights", hint, verify)
    width = json.loads(meta.get("config", "{}")).get("width", CHANNELS)
    model = build_image_tower(tuple(int(w) for w in width))
    model.load_state_dict(load_file(str(path)))
    return model.eval()
