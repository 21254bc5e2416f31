"""Naive crop baselines from the paper's analysis: a fixed centre crop and a seeded random
crop. Both ignore the question; they show that cropping without a policy hurts."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from region_rerank._validate import check_range
from region_rerank.croppers.base import BaseCropper
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.types import Box, CropDecision, Query

__all__ = ["CenterCropper", "RandomCropper"]


class CenterCropper(BaseCropper):
    """Always crop the centred box covering ``fraction`` of each side."""

    name = "center"

    def __init__(self, fraction: float = 0.5, image_options: ImageLoadOptions | None = None):
        check_range("fraction", fraction, 0.0, 1.0, low_inclusive=False)
        self.fraction = fraction
        self.image_options = image_options

    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        out = []
        for query in queries:
            w, h = load_image(query.image, self.image_options).size
            dx, dy = w * (1 - self.fraction) / 2, h * (1 - self.fraction) / 2
            box = Box(dx, dy, w - dx, h - dy)
            out.append(CropDecision.region(box, image_size=(w, h), source=self.name))
        return out


class RandomCropper(BaseCropper):
    """Crop a random box (side ``fraction`` of each side) placed uniformly; seeded by the
    query id (or question), so the same query always gets the same box."""

    name = "random"

    def __init__(
        self,
        fraction: float = 0.5,
        seed: int = 0,
        image_options: ImageLoadOptions | None = None,
    ) -> None:
        check_range("fraction", fraction, 0.0, 1.0, low_inclusive=False)
        self.fraction, self.seed = fraction, seed
        self.image_options = image_options

    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        out = []
        for query in queries:
            w, h = load_image(query.image, self.image_options).size
            key = f"{self.seed}:{query.id if query.id is not None else query.question}"
            digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
            u = int.from_bytes(digest[:4], "big") / 2**32
            v = int.from_bytes(digest[4:8], "big") / 2**32
            bw, bh = w * self.fraction, h * self.fraction
            x1, y1 = u * (w - bw), v * (h - bh)
            box = Box(x1, y1, x1 + bw, y1 + bh)
            out.append(CropDecision.region(box, image_size=(w, h), source=self.name))
        return out
