"""Candidate crop regions: a multi-scale sliding grid of boxes over the image.

Used by training-free croppers that pick a region by similarity, and by the light learned
policy, which scores these proposals.

**Work bound.** The number of boxes depends on the settings only, never on the image: on an
image at most ``max_aspect`` times longer than wide the boxes are squares, and on a more
elongated one they stretch along the long side (to ``scale * long_side / max_aspect``), so
a 1 x 100000 image gets no more boxes than a 1 x 2 one. :func:`max_grid_proposals` gives
the bound (128 with the defaults; a square image gets 61).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from region_rerank._validate import check_range
from region_rerank.types import Box

__all__ = ["DEFAULT_MAX_ASPECT", "grid_proposals", "max_grid_proposals"]

#: Images more elongated than this get boxes stretched along their long side.
DEFAULT_MAX_ASPECT = 2.0


def _starts(limit: int, side: float, step: float) -> list[float]:
    """Grid positions along one axis of length ``limit``: every ``step`` while a box fits,
    then one flush with the far border."""
    out, pos = [], 0.0
    while pos + side < limit:
        out.append(pos)
        pos += step
    out.append(max(0.0, limit - side))
    return out


def _check(scales: Sequence[float], overlap: float, max_aspect: float) -> None:
    check_range("overlap", overlap, 0.0, 0.9)
    check_range("max_aspect", max_aspect, 1.0)
    for scale in scales:
        check_range("scale", scale, 0.0, 1.0, low_inclusive=False)


def _positions_bound(relative_side: float, overlap: float) -> int:
    """Most positions along an axis whose box side is ``relative_side`` of its length."""
    return math.floor((1.0 / relative_side - 1.0) / (1.0 - overlap) + 1e-9) + 2


def max_grid_proposals(
    scales: Sequence[float] = (0.3, 0.45, 0.6),
    overlap: float = 0.5,
    max_aspect: float = DEFAULT_MAX_ASPECT,
) -> int:
    """The most boxes :func:`grid_proposals` returns for any image size with these settings.

    Per scale ``s``: at most ``floor((1/s - 1) / (1 - overlap)) + 2`` positions along the
    short side and ``floor((max_aspect/s - 1) / (1 - overlap)) + 2`` along the long one.
    """
    _check(scales, overlap, max_aspect)
    return sum(
        _positions_bound(s, overlap) * _positions_bound(s / max_aspect, overlap) for s in scales
    )


def grid_proposals(
    image_size: tuple[int, int],
    scales: Sequence[float] = (0.3, 0.45, 0.6),
    overlap: float = 0.5,
    max_aspect: float = DEFAULT_MAX_ASPECT,
) -> list[Box]:
    """Boxes of side ``scale * min(width, height)`` on a grid with the given ``overlap``,
    for each scale, covering the whole image (last row/column flush with the border).
    Deterministic; ordered by scale, then row, then column.

    On an image more than ``max_aspect`` times longer than wide, the side along the long
    axis is ``scale * long_side / max_aspect`` instead, so the count never exceeds
    :func:`max_grid_proposals` (see the module docstring).

    Args:
        image_size: ``(width, height)``.
        scales: Box sides as fractions of the shorter image side, each in (0, 1].
        overlap: Fraction of a box shared with its neighbour, in [0, 0.9].
        max_aspect: Image elongation beyond which boxes stretch (>= 1).

    Raises:
        ConfigError: A setting or the image size is out of range.
    """
    w, h = int(image_size[0]), int(image_size[1])
    check_range("image width", w, 1)
    check_range("image height", h, 1)
    _check(scales, overlap, max_aspect)
    short, long_ = min(w, h), max(w, h)
    boxes: list[Box] = []
    for scale in scales:
        side_short = max(1.0, scale * short)
        side_long = max(side_short, scale * long_ / max_aspect)
        side_w, side_h = (side_long, side_short) if w >= h else (side_short, side_long)
        xs = _starts(w, side_w, max(1.0, side_w * (1.0 - overlap)))
        ys = _starts(h, side_h, max(1.0, side_h * (1.0 - overlap)))
        for y in ys:
            for x in xs:
                boxes.append(Box(x, y, min(float(w), x + side_w), min(float(h), y + side_h)))
    return boxes
