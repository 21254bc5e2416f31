"""Candidate crop regions: a multi-scale sliding grid of boxes over the image.

Used by training-free croppers that pick a region by similarity, and by the light learned
policy, which scores these proposals.
"""

from __future__ import annotations

from collections.abc import Sequence

from region_rerank._validate import check_range
from region_rerank.types import Box

__all__ = ["grid_proposals"]


def grid_proposals(
    image_size: tuple[int, int],
    scales: Sequence[float] = (0.3, 0.45, 0.6),
    overlap: float = 0.5,
) -> list[Box]:
    """Square-ish boxes of side ``scale * min(width, height)`` on a grid with the given
    ``overlap``, for each scale, covering the whole image (last row/column flush with the
    border). Deterministic; ordered by scale, then row, then column.

    Args:
        image_size: ``(width, height)``.
        scales: Box sides as fractions of the shorter image side, each in (0, 1].
        overlap: Fraction of a box shared with its neighbour, in [0, 0.9].
    """
    w, h = int(image_size[0]), int(image_size[1])
    check_range("image width", w, 1)
    check_range("image height", h, 1)
    check_range("overlap", overlap, 0.0, 0.9)
    boxes: list[Box] = []
    for scale in scales:
        check_range("scale", scale, 0.0, 1.0, low_inclusive=False)
        side = max(1.0, scale * min(w, h))
        step = max(1.0, side * (1.0 - overlap))

        def starts(limit: int, side: float = side, step: float = step) -> list[float]:
            out, pos = [], 0.0
            while pos + side < limit:
                out.append(pos)
                pos += step
            out.append(max(0.0, limit - side))
            return out

        for y in starts(h):
            for x in starts(w):
                boxes.append(Box(x, y, min(float(w), x + side), min(float(h), y + side)))
    return boxes
