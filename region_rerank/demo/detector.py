"""The demo world's class-agnostic object detector: boxes around every object in a scene.

It stands in, for the demo world, for the detector a real deployment would pass to the
light policy (a class-agnostic OWLv2 or any box proposer): its boxes are added to the grid
proposals, so the policy can crop *tightly* around a small object and read object sizes
from the boxes' geometry ("the smallest object").

A small CenterNet-style network (about 0.2 M parameters): a stride-32 CNN with a
top-down path to a stride-8 map, predicting per cell an object-centre heat, the box's log
width and height, and the centre's sub-cell offset. Trained by
:mod:`region_rerank.demo.detector_training` on scenes of the world generator; the shipped
weights are checksum-verified on every load.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.boxes import clamp_box
from region_rerank.checksums import checked_metadata
from region_rerank.errors import ConfigError
from region_rerank.types import Box

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "DETECTOR_WEIGHTS_PATH",
    "DETECTOR_INPUT",
    "STRIDE",
    "DemoBoxDetector",
    "build_detector_net",
    "decode_boxes",
    "load_detector_net",
    "to_input",
]

DETECTOR_WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "box_detector.safetensors"
#: Images are resized (squashed) to this square side before the network.
DETECTOR_INPUT = 224
#: Output map stride in input pixels.
STRIDE = 8
_MEAN, _STD = 0.5, 0.25


@functools.cache
def _net_class() -> type:
    import torch
    from torch import nn

    def block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    class BoxDetectorNet(nn.Module):
        """Stride-8/16/32 features, top-down fusion, three 1x1 heads at stride 8."""

        def __init__(self, width: int = 32) -> None:
            super().__init__()
            w = width
            self.s8 = nn.Sequential(block(3, w // 2, 2), block(w // 2, w, 2), block(w, w, 2))
            self.s16 = nn.Sequential(block(w, 2 * w, 2), block(2 * w, 2 * w))
            self.s32 = nn.Sequential(block(2 * w, 3 * w, 2), block(3 * w, 3 * w))
            self.lat16 = nn.Conv2d(2 * w, 2 * w, 1)
            self.top32 = nn.Conv2d(3 * w, 2 * w, 1)
            self.lat8 = nn.Conv2d(w, 2 * w, 1)
            self.fuse = block(2 * w, 2 * w)
            self.heat = nn.Conv2d(2 * w, 1, 1)
            self.size = nn.Conv2d(2 * w, 2, 1)
            self.offset = nn.Conv2d(2 * w, 2, 1)
            nn.init.constant_(self.heat.bias, -4.0)  # type: ignore[arg-type]

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            up = nn.functional.interpolate
            f8 = self.s8(x)
            f16 = self.s16(f8)
            f32 = self.s32(f16)
            p16 = self.lat16(f16) + up(self.top32(f32), size=f16.shape[-2:], mode="nearest")
            p8 = self.fuse(self.lat8(f8) + up(p16, size=f8.shape[-2:], mode="nearest"))
            return self.heat(p8).squeeze(1), self.size(p8), torch.sigmoid(self.offset(p8))

    return BoxDetectorNet


def build_detector_net(width: int = 32) -> torch.nn.Module:
    """A fresh (random) detector network of base channel ``width``."""
    check_range("width", width, 2)
    if width % 2:
        raise ConfigError(f"width={width} must be even")
    return _net_class()(width)


def load_detector_net(path: str | Path | None = None, *, verify: bool = True) -> torch.nn.Module:
    """Load the detector (the shipped weights by default) in eval mode.

    Raises:
        ConfigError: Missing weights, or a checksum mismatch.
    """
    from safetensors.torch import load_file

    path = Path(path) if path is not None else DETECTOR_WEIGHTS_PATH
    hint = "`python scripts/train_demo_detector.py`"
    meta = checked_metadata(path, "demo detector weights", hint, verify)
    width = int(json.loads(meta.get("config", "{}")).get("width", 32))
    net = build_detector_net(width)
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def to_input(images: Sequence[Image.Image]) -> torch.Tensor:
    """``N x 3 x DETECTOR_INPUT x DETECTOR_INPUT`` normalised tensor of RGB images."""
    import numpy as np
    import torch

    side = DETECTOR_INPUT
    arrays = [
        np.asarray(im.convert("RGB").resize((side, side), resample=2), dtype=np.float32)
        for im in images
    ]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    return (x - _MEAN) / _STD


def decode_boxes(
    heat: torch.Tensor,
    size: torch.Tensor,
    offset: torch.Tensor,
    *,
    max_boxes: int,
    min_score: float,
) -> list[list[tuple[float, float, float, float, float]]]:
    """Per image, up to ``max_boxes`` ``(score, x1, y1, x2, y2)`` in *input* pixels (of a
    ``DETECTOR_INPUT`` square), best first: the local maxima (3x3) of the sigmoid heat
    above ``min_score``, sized by the predicted log width / height."""
    import torch

    prob = torch.sigmoid(heat)
    peaks = prob * (prob == torch.nn.functional.max_pool2d(prob[:, None], 3, 1, 1)[:, 0])
    n, h, w = prob.shape
    k = min(max_boxes, h * w)
    scores, flat = peaks.flatten(1).topk(k, dim=1)
    out: list[list[tuple[float, float, float, float, float]]] = []
    for i in range(n):
        boxes = []
        for score, idx in zip(scores[i].tolist(), flat[i].tolist()):
            if score < min_score:
                break
            gy, gx = divmod(idx, w)
            cx = (gx + float(offset[i, 0, gy, gx])) * STRIDE
            cy = (gy + float(offset[i, 1, gy, gx])) * STRIDE
            bw = float(size[i, 0, gy, gx].exp()) * DETECTOR_INPUT
            bh = float(size[i, 1, gy, gx].exp()) * DETECTOR_INPUT
            boxes.append((score, cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
        out.append(boxes)
    return out


class DemoBoxDetector:
    """Class-agnostic object boxes for the light policy's ``detector`` argument:
    ``detector(image, question) -> list[Box]`` (the question is not used), best first.

    Args:
        path: Weights (the shipped ones by default; checksum verified).
        max_boxes: Boxes returned at most per image.
        min_score: Centre-heat threshold in (0, 1).
        device: Torch device of the network.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_boxes: int = 8,
        min_score: float = 0.3,
        device: Any = "cpu",
    ) -> None:
        check_range("max_boxes", max_boxes, 1)
        check_range("min_score", min_score, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        self.path = Path(path) if path is not None else DETECTOR_WEIGHTS_PATH
        self.max_boxes = max_boxes
        self.min_score = min_score
        self.device = device
        self.net = load_detector_net(self.path).to(device)
        self.sha256 = self.path.with_suffix(".sha256").read_text().strip()  # verified on load

    def card(self) -> dict[str, Any]:
        """What a policy trained with this detector records: kind, weights checksum and
        the box settings."""
        return {
            "kind": "demo-box-detector",
            "sha256": self.sha256,
            "max_boxes": self.max_boxes,
            "min_score": self.min_score,
        }

    def __call__(self, image: Image.Image, question: str = "") -> list[Box]:
        return self.detect([image])[0]

    def detect(self, images: Sequence[Image.Image]) -> list[list[Box]]:
        """Boxes in each image's own pixels, best first (the image is squashed to the
        network's square input, and the boxes stretched back and clamped to the image)."""
        import torch

        if not images:
            return []
        with torch.inference_mode():
            heat, size, offset = self.net(to_input(images).to(self.device))
        raw = decode_boxes(
            heat.cpu(), size.cpu(), offset.cpu(), max_boxes=self.max_boxes,
            min_score=self.min_score,
        )  # fmt: skip
        out = []
        for image, found in zip(images, raw):
            sx, sy = image.size[0] / DETECTOR_INPUT, image.size[1] / DETECTOR_INPUT
            scaled = (
                clamp_box((x1 * sx, y1 * sy, x2 * sx, y2 * sy), image.size)
                for _, x1, y1, x2, y2 in found
            )
            out.append([b for b in scaled if b is not None])
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("net")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.net = load_detector_net(self.path).to(self.device)
