"""The baseline cropper: always keep the whole image."""

from __future__ import annotations

from collections.abc import Sequence

from region_rerank.croppers.base import BaseCropper
from region_rerank.types import CropDecision, Query

__all__ = ["FullImageCropper"]


class FullImageCropper(BaseCropper):
    """Always returns FULL: the standard re-ranker that embeds the whole query image."""

    name = "full"

    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        return [CropDecision.full(source=self.name) for _ in queries]
