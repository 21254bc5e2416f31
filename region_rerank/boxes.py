"""Box math: validation, clamping, padding, minimum size, IoU and coordinate frames.

Every function here is total on numeric input: malformed coordinates (NaN, inf, inverted,
zero-area after clamping, wrong length) give ``None`` from :func:`sanitize_box` rather
than an exception, so a policy's output can never crash the pipeline.

Coordinate frames (see docs/method.md section 3):

* :attr:`CoordFrame.PIXELS` -- absolute pixels of the original image.
* :attr:`CoordFrame.QWEN25_RESIZED` -- absolute pixels of Qwen2.5-VL's smart-resized input.
* :attr:`CoordFrame.NORM_1000` -- 0..1000 relative frame of Qwen2-VL and Qwen3-VL.
* :attr:`CoordFrame.NORM_1` -- 0..1 relative frame.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from typing import Any

from region_rerank.errors import ConfigError
from region_rerank.types import Box

__all__ = [
    "CoordFrame",
    "sanitize_box",
    "clamp_box",
    "pad_box",
    "ensure_min_size",
    "iou",
    "qwen_smart_resize",
    "to_pixels",
    "from_pixels",
]

Size = tuple[int, int]  # (width, height)


class CoordFrame(str, enum.Enum):
    """The coordinate frame a box is expressed in."""

    PIXELS = "pixels"
    QWEN25_RESIZED = "qwen25_resized"
    NORM_1000 = "norm_1000"
    NORM_1 = "norm_1"


def _as_floats(coords: Any) -> tuple[float, float, float, float] | None:
    if isinstance(coords, Box):
        return coords.as_tuple()
    try:
        values = [float(c) for c in coords]
    except (TypeError, ValueError, OverflowError):
        return None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        return None
    return (values[0], values[1], values[2], values[3])


def _check_size(image_size: Size) -> tuple[int, int]:
    w, h = int(image_size[0]), int(image_size[1])
    if w <= 0 or h <= 0:
        raise ConfigError(f"image_size must be positive (width, height), got {image_size!r}")
    return w, h


def clamp_box(coords: Any, image_size: Size) -> Box | None:
    """Clamp ``(x1, y1, x2, y2)`` to the image; ``None`` if malformed or empty afterwards.

    Inverted boxes (``x2 <= x1`` or ``y2 <= y1``) are malformed, not re-ordered.
    """
    values = _as_floats(coords)
    if values is None:
        return None
    w, h = _check_size(image_size)
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        return None
    x1, x2 = min(max(x1, 0.0), float(w)), min(max(x2, 0.0), float(w))
    y1, y2 = min(max(y1, 0.0), float(h)), min(max(y2, 0.0), float(h))
    if x2 - x1 <= 0.0 or y2 - y1 <= 0.0:
        return None
    return Box(x1, y1, x2, y2)


def sanitize_box(
    coords: Any,
    image_size: Size,
    *,
    frame: CoordFrame = CoordFrame.PIXELS,
    resized_size: Size | None = None,
    min_size: float = 1.0,
) -> Box | None:
    """Convert ``coords`` from ``frame`` to original pixels, clamp, and validate.

    Returns ``None`` when the box is malformed: not four finite numbers, inverted,
    zero-area after clamping, or smaller than ``min_size`` pixels on a side after clamping.
    """
    pixels = to_pixels(coords, frame, image_size, resized_size=resized_size)
    if pixels is None:
        return None
    box = clamp_box(pixels, image_size)
    if box is None or box.width < min_size or box.height < min_size:
        return None
    return box


def pad_box(box: Box, image_size: Size, margin: float) -> Box:
    """Grow ``box`` by ``margin`` times its width/height on each side, clamped to the image."""
    if not math.isfinite(margin) or margin < 0:
        raise ConfigError(f"margin={margin!r} must be a finite number >= 0")
    dx, dy = box.width * margin, box.height * margin
    padded = clamp_box((box.x1 - dx, box.y1 - dy, box.x2 + dx, box.y2 + dy), image_size)
    return padded if padded is not None else box


def ensure_min_size(box: Box, image_size: Size, min_size: float) -> Box:
    """Grow ``box`` around its centre to at least ``min_size`` pixels per side (capped by the
    image), shifting it to stay inside the image."""
    w, h = _check_size(image_size)

    def grow(lo: float, hi: float, limit: int) -> tuple[float, float]:
        target = min(float(limit), max(hi - lo, float(min_size)))
        if hi - lo >= target:
            return lo, hi
        centre = (lo + hi) / 2.0
        lo2 = min(max(centre - target / 2.0, 0.0), limit - target)
        return lo2, lo2 + target

    x1, x2 = grow(box.x1, box.x2, w)
    y1, y2 = grow(box.y1, box.y2, h)
    return Box(x1, y1, x2, y2)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes, in [0, 1]."""
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def qwen_smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int = 56 * 56,
    max_pixels: int = 28 * 28 * 1280,
) -> tuple[int, int]:
    """Qwen2-VL / Qwen2.5-VL input size ``(height, width)``: both multiples of ``factor``,
    aspect ratio kept as closely as possible, pixel count within ``[min_pixels, max_pixels]``.

    Same arithmetic as the Qwen-VL image processors (which raise on aspect ratios over 200;
    this version does not, the result is then just very distorted).
    """
    if height <= 0 or width <= 0:
        raise ConfigError(f"image height/width must be positive, got {height}x{width}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _frame_scale(
    frame: CoordFrame, image_size: Size, resized_size: Size | None
) -> tuple[float, float]:
    """Multipliers (sx, sy) that map ``frame`` coordinates to original pixels."""
    w, h = _check_size(image_size)
    frame = CoordFrame(frame)
    if frame is CoordFrame.PIXELS:
        return 1.0, 1.0
    if frame is CoordFrame.NORM_1000:
        return w / 1000.0, h / 1000.0
    if frame is CoordFrame.NORM_1:
        return float(w), float(h)
    if resized_size is None:
        rh, rw = qwen_smart_resize(h, w)
    else:
        rw, rh = _check_size(resized_size)
    return w / float(rw), h / float(rh)


def to_pixels(
    coords: Any,
    frame: CoordFrame,
    image_size: Size,
    *,
    resized_size: Size | None = None,
) -> tuple[float, float, float, float] | None:
    """Map ``coords`` from ``frame`` to original-image pixels (no clamping).

    Args:
        coords: Four numbers ``(x1, y1, x2, y2)``.
        frame: The frame ``coords`` are in.
        image_size: Original ``(width, height)``.
        resized_size: ``(width, height)`` of the model input for
            :attr:`CoordFrame.QWEN25_RESIZED`; computed with :func:`qwen_smart_resize`
            defaults when omitted.

    Returns:
        The pixel coordinates, or ``None`` when ``coords`` is not four finite numbers.
    """
    values = _as_floats(coords)
    if values is None:
        return None
    sx, sy = _frame_scale(frame, image_size, resized_size)
    x1, y1, x2, y2 = values
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def from_pixels(
    box: Box | Sequence[float],
    frame: CoordFrame,
    image_size: Size,
    *,
    resized_size: Size | None = None,
) -> tuple[float, float, float, float]:
    """Inverse of :func:`to_pixels`: express a pixel box in ``frame``."""
    values = _as_floats(box)
    if values is None:
        raise ConfigError(f"box must be four finite numbers, got {box!r}")
    sx, sy = _frame_scale(frame, image_size, resized_size)
    x1, y1, x2, y2 = values
    return (x1 / sx, y1 / sy, x2 / sx, y2 / sy)
