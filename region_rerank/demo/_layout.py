"""Scene geometry and drawing for :mod:`region_rerank.demo.scenes` (private).

Boxes are integer pixel tuples ``(x1, y1, x2, y2)`` with exclusive ``x2, y2``. Placement is
rejection sampling: each object tries random positions that keep a 3-pixel gap to every
placed object and satisfy the question type's predicate (see the scenes module docstring).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from region_rerank.demo.entities import COLOURS

if TYPE_CHECKING:
    from PIL import Image

BoxT = tuple[int, int, int, int]


def _centre(b: BoxT) -> tuple[float, float]:
    return ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)


def _area(b: BoxT) -> int:
    return (b[2] - b[0]) * (b[3] - b[1])


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return min(a1, b1) - max(a0, b0)


def _disjoint(a: BoxT, b: BoxT, gap: int = 3) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _side_of(box: BoxT, anchor: BoxT, side: str, strict: bool) -> bool:
    """``box`` is on ``side`` of ``anchor``: strict = entirely beyond with 40% span overlap;
    loose = centre beyond the anchor's centre with any span overlap."""
    cx, cy = _centre(box)
    ax, ay = _centre(anchor)
    horizontal = side in ("left", "right")
    if horizontal:
        ov, short = (
            _overlap(box[1], box[3], anchor[1], anchor[3]),
            min(box[3] - box[1], anchor[3] - anchor[1]),
        )
    else:
        ov, short = (
            _overlap(box[0], box[2], anchor[0], anchor[2]),
            min(box[2] - box[0], anchor[2] - anchor[0]),
        )
    if strict:
        beyond = {
            "left": box[2] <= anchor[0],
            "right": box[0] >= anchor[2],
            "top": box[3] <= anchor[1],
            "bottom": box[1] >= anchor[3],
        }[side]
        return beyond and ov >= 0.4 * short
    beyond = {"left": cx < ax, "right": cx > ax, "top": cy < ay, "bottom": cy > ay}[side]
    return beyond and ov > 0


def _corner_point(corner: str, w: int, h: int) -> tuple[float, float]:
    return (0.0 if "left" in corner else float(w), 0.0 if "top" in corner else float(h))


def _dist(p: tuple[float, float], q: tuple[float, float]) -> float:
    return float(np.hypot(p[0] - q[0], p[1] - q[1]))


def _sample_box(
    rng: np.random.Generator,
    size: tuple[int, int],
    canvas: tuple[int, int],
    placed: list[BoxT],
    ok: Callable[[BoxT], bool],
    tries: int = 200,
) -> BoxT | None:
    w, h = size
    cw, ch = canvas
    if w > cw or h > ch:
        return None
    for _ in range(tries):
        x, y = int(rng.integers(0, cw - w + 1)), int(rng.integers(0, ch - h + 1))
        box = (x, y, x + w, y + h)
        if all(_disjoint(box, p) for p in placed) and ok(box):
            return box
    return None


def _constraints(
    qtype: str, detail: str, canvas: tuple[int, int]
) -> tuple[Callable[[BoxT, list[BoxT]], bool], Callable[[BoxT, list[BoxT]], bool]]:
    """(predicate for the target box, predicate for each distractor box) given placed boxes.

    For relations the anchor is placed first; ``placed[0]`` is the anchor, ``placed[1]`` the
    target. Otherwise ``placed[0]`` is the target."""
    cw, ch = canvas

    def anything(box: BoxT, placed: list[BoxT]) -> bool:
        return True

    if detail.startswith("corner:"):
        corner = detail.split(":", 1)[1]
        cp = _corner_point(corner, cw, ch)

        def t_ok(box: BoxT, placed: list[BoxT]) -> bool:
            cx, cy = _centre(box)
            return abs(cx - cp[0]) < 0.4 * cw and abs(cy - cp[1]) < 0.4 * ch

        def d_ok(box: BoxT, placed: list[BoxT]) -> bool:
            return _dist(_centre(placed[0]), cp) < 0.75 * _dist(_centre(box), cp)

        return t_ok, d_ok
    if detail.startswith("extreme:"):
        side = detail.split(":", 1)[1]
        sign = 1 if side in ("left", "top") else -1
        axis = 0 if side in ("left", "right") else 1
        extent = (cw, ch)[axis]

        def t_ok(box: BoxT, placed: list[BoxT]) -> bool:
            c = _centre(box)[axis]
            return c < 0.35 * extent if sign > 0 else c > 0.65 * extent

        def d_ok(box: BoxT, placed: list[BoxT]) -> bool:
            t = placed[0]
            margin = 0.06 * extent
            if sign > 0:
                return _centre(box)[axis] > _centre(t)[axis] + margin and box[axis] > t[axis]
            return _centre(box)[axis] < _centre(t)[axis] - margin and box[axis + 2] < t[axis + 2]

        return t_ok, d_ok
    if qtype == "relation":
        side = detail

        def t_rel(box: BoxT, placed: list[BoxT]) -> bool:
            a = placed[0]
            gap = {
                "left": a[0] - box[2],
                "right": box[0] - a[2],
                "top": a[1] - box[3],
                "bottom": box[1] - a[3],
            }[side]
            return _side_of(box, a, side, strict=True) and gap <= 0.2 * max(cw, ch)

        def d_rel(box: BoxT, placed: list[BoxT]) -> bool:
            return not _side_of(box, placed[0], side, strict=False)

        return t_rel, d_rel
    return anything, anything


def _size_clear(tiles: list[Image.Image], detail: str) -> bool:
    """The target (first tile) is >= 1.3x larger / smaller than every other tile, both in
    box area and in drawn (opaque) area, so "largest" holds by either reading."""
    boxes = [float(t.size[0] * t.size[1]) for t in tiles]
    ink = [float((np.asarray(t.getchannel("A")) >= 24).sum()) for t in tiles]
    for areas in (boxes, ink):
        if detail == "largest" and areas[0] < 1.3 * max(areas[1:]):
            return False
        if detail == "smallest" and 1.3 * areas[0] > min(areas[1:]):
            return False
    return True


def layout(
    canvas: tuple[int, int],
    rng: np.random.Generator,
    qtype: str,
    detail: str,
    tiles: list[Image.Image],
) -> list[BoxT] | None:
    """Boxes for ``tiles`` (target first, the relation anchor second), or ``None`` if
    this attempt failed (sizes not clearly ordered, or no valid position found)."""
    t_ok, d_ok = _constraints(qtype, detail, canvas)
    sizes = [t.size for t in tiles]
    if qtype == "size" and not _size_clear(tiles, detail):
        return None
    order = [1, 0, *range(2, len(tiles))] if qtype == "relation" else list(range(len(tiles)))
    placed: list[BoxT] = []
    boxes: dict[int, BoxT] = {}
    for k, i in enumerate(order):
        is_target = i == 0
        if qtype == "relation" and k == 0:
            ok: Callable[[BoxT], bool] = lambda b: True  # noqa: E731 -- the anchor goes anywhere
        elif is_target:
            ok = lambda b: t_ok(b, placed)  # noqa: E731
        else:
            ok = lambda b: d_ok(b, placed)  # noqa: E731
        box = _sample_box(rng, sizes[i], canvas, placed, ok)
        if box is None:
            return None
        placed.append(box)
        boxes[i] = box
    return [boxes[i] for i in range(len(tiles))]


def _background(canvas: tuple[int, int], c: float, rng: np.random.Generator) -> Image.Image:
    """Plain tinted canvas plus clutter ``c``: low-frequency texture, lines and specks."""
    from PIL import Image, ImageDraw

    cw, ch = canvas
    base = rng.uniform(165, 235, 3)
    grid = base[None, None, :] + rng.normal(0.0, 38.0 * c, (5, 5, 3))
    small = Image.fromarray(np.clip(grid, 0, 255).round().astype(np.uint8), "RGB")
    img = (
        small.resize((cw, ch), Image.Resampling.BICUBIC)
        if c > 0
        else Image.new("RGB", (cw, ch), tuple(int(v) for v in base.round()))
    )
    draw = ImageDraw.Draw(img)
    palette = list(COLOURS.values())
    scale = min(cw, ch) / 224.0
    for _ in range(round(22 * c)):
        colour = (
            palette[int(rng.integers(len(palette)))]
            if rng.random() < 0.5
            else tuple(int(v) for v in rng.integers(40, 220, 3))
        )
        pts = [tuple(float(v) for v in rng.uniform(0, 1, 2) * (cw, ch)) for _ in range(2)]
        draw.line(pts, fill=colour, width=int(rng.integers(1, 4) * scale) or 1)
    for _ in range(round(40 * c)):
        colour = tuple(int(v) for v in rng.integers(30, 230, 3))
        x, y = rng.uniform(0, cw), rng.uniform(0, ch)
        r = float(rng.uniform(1.0, 4.0)) * scale
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.rectangle((x - r, y - r, x + r, y + r), fill=colour)
    return img


def compose(
    canvas: tuple[int, int],
    clutter: float,
    rng: np.random.Generator,
    tiles: list[Image.Image],
    boxes: list[BoxT],
) -> Image.Image:
    """Draw the cluttered background, paste ``tiles`` at ``boxes``, add top lines and noise."""
    from PIL import Image, ImageDraw

    c = clutter
    sheet = _background(canvas, c, rng).convert("RGBA")
    for tile, box in zip(tiles, boxes):
        sheet.alpha_composite(tile, (box[0], box[1]))
    img = sheet.convert("RGB")
    draw = ImageDraw.Draw(img)
    cw, ch = canvas
    for _ in range(round(3 * c)):  # a few thin lines over everything (partial occlusion)
        colour = tuple(int(v) for v in rng.integers(40, 220, 3))
        pts = [tuple(float(v) for v in rng.uniform(0, 1, 2) * (cw, ch)) for _ in range(2)]
        draw.line(pts, fill=colour, width=1)
    if c > 0:
        arr = np.asarray(img, dtype=np.float32)
        arr = arr + rng.normal(0.0, 14.0 * c, arr.shape).astype(np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "RGB")
    return img
