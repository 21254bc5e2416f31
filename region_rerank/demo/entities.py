"""The synthetic knowledge base: procedurally drawn entities with names and descriptions.

Every entity is one combination of a :data:`SHAPES` shape, a :data:`COLOURS` colour and a
:data:`PATTERNS` fill pattern (10 x 8 x 4 = 320 entities). Each has a stable id
(``ent-000`` ... in attribute order), a made-up proper name (so text retrieval cannot
simply match the attribute words in a question), and a short encyclopedic paragraph that
mentions its attributes. The KB text does not depend on any seed; only rendered images do.

:func:`render_entity` draws an entity as an RGBA tile with small random variation
(rotation, scale, colour jitter), so reference images and in-scene appearances differ.

Example:
    >>> kb = build_kb()
    >>> len(kb), kb[0].id, kb[0].label
    (320, 'ent-000', 'red solid circle')
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from region_rerank.errors import ConfigError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "SHAPES",
    "COLOURS",
    "PATTERNS",
    "PATTERN_WORDS",
    "REFERENCE_BACKGROUND",
    "Entity",
    "build_kb",
    "render_entity",
    "reference_images",
]

#: Shape names (also the nouns used in questions: "the star").
SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "diamond",
    "hexagon",
    "cross",
    "ring",
    "crescent",
    "arrow",
)
#: Well-separated named colours (RGB).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 15),
    "yellow": (240, 215, 20),
    "green": (35, 160, 55),
    "teal": (20, 170, 175),
    "blue": (35, 75, 215),
    "purple": (125, 45, 180),
    "pink": (240, 105, 185),
}
#: Fill patterns.
PATTERNS: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")
#: Adjective used for each pattern in questions ("the checkered object").
PATTERN_WORDS: dict[str, str] = {
    "solid": "solid-coloured",
    "striped": "striped",
    "dotted": "dotted",
    "checkered": "checkered",
}
#: Plain background of the reference images.
REFERENCE_BACKGROUND: tuple[int, int, int] = (244, 244, 240)

_LIGHT = np.array((250, 250, 246), dtype=np.float64)
_SYLLABLES_A = ("ka", "lo", "ve", "mi", "dra", "tor", "sa", "quel", "bri", "no", "zu", "fen")
_SYLLABLES_B = ("ran", "vi", "mel", "tho", "si", "ga", "ru", "len", "do", "pha", "ki", "ster")
_SYLLABLES_C = ("th", "x", "n", "s", "dor", "ria", "on", "ix", "a", "ek", "um", "is")
_REGIONS = (
    "northern marshes",
    "eastern highlands",
    "coastal dunes",
    "southern plateau",
    "western fjords",
    "central steppe",
    "river delta",
    "volcanic isles",
)
_KEEPERS = (
    "the Aldmoor Collection",
    "the Museum of Forms",
    "the Varenne Archive",
    "the Royal Cabinet of Figures",
    "the Ostrand Institute",
)
_PATTERN_PHRASES = {
    "solid": "a solid {c} surface without markings",
    "striped": "diagonal {c} and white stripes",
    "dotted": "a {c} surface covered in white dots",
    "checkered": "a checkered grid of {c} and white squares",
}


@dataclass(frozen=True)
class Entity:
    """One knowledge-base entry.

    Attributes:
        id: Stable identifier (``ent-000`` ...), fixed by the attribute order.
        index: Position in the full KB.
        shape: One of :data:`SHAPES`.
        colour: One of :data:`COLOURS`.
        pattern: One of :data:`PATTERNS`.
        name: A made-up proper name ("Kavimeth").
        description: A short encyclopedic paragraph mentioning the attributes.
    """

    id: str
    index: int
    shape: str
    colour: str
    pattern: str
    name: str
    description: str

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The entity's nominal colour."""
        return COLOURS[self.colour]

    @property
    def label(self) -> str:
        """Attribute description, e.g. ``"red striped star"``."""
        return f"{self.colour} {self.pattern} {self.shape}"

    @property
    def title(self) -> str:
        """Name plus attributes, e.g. ``"Kavimeth (red striped star)"``."""
        return f"{self.name} ({self.label})"

    @property
    def text(self) -> str:
        """The KB text: title followed by the description."""
        return f"{self.title}. {self.description}"


def _make_names(n: int) -> list[str]:
    rng = np.random.default_rng(20260511)  # fixed: names never depend on the world seed
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        parts = (
            _SYLLABLES_A[int(rng.integers(len(_SYLLABLES_A)))],
            _SYLLABLES_B[int(rng.integers(len(_SYLLABLES_B)))],
            _SYLLABLES_C[int(rng.integers(len(_SYLLABLES_C)))],
        )
        name = "".join(parts).capitalize()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _describe(index: int, name: str, shape: str, colour: str, pattern: str) -> str:
    year = 1702 + (index * 37) % 290
    region = _REGIONS[(index * 5) % len(_REGIONS)]
    keeper = _KEEPERS[(index * 3) % len(_KEEPERS)]
    article = "an" if colour[0] in "aeiou" else "a"
    surface = _PATTERN_PHRASES[pattern].format(c=colour)
    return (
        f"{name} is {article} {colour} {shape} figure with a {pattern} pattern: its face "
        f"shows {surface}. It was first recorded in {year} in the {region}, and the "
        f"best-known specimen is held by {keeper}. Catalogue number {1000 + index * 7}."
    )


@lru_cache(maxsize=4)
def _full_kb() -> tuple[Entity, ...]:
    combos = list(itertools.product(SHAPES, COLOURS, PATTERNS))
    names = _make_names(len(combos))
    return tuple(
        Entity(
            id=f"ent-{i:03d}",
            index=i,
            shape=shape,
            colour=colour,
            pattern=pattern,
            name=names[i],
            description=_describe(i, names[i], shape, colour, pattern),
        )
        for i, (shape, colour, pattern) in enumerate(combos)
    )


def build_kb(n_entities: int | None = None) -> list[Entity]:
    """Return the knowledge base (deterministic, seed-independent).

    Args:
        n_entities: Keep only the first ``n_entities`` entries (all 320 when ``None``).
            The first entries cover every shape before repeating colours and patterns
            only in attribute order, so prefer the full KB for benchmarks.

    Returns:
        A new list of :class:`Entity` objects with distinct (shape, colour, pattern).

    Raises:
        ConfigError: If ``n_entities`` is not between 2 and 320.
    """
    kb = _full_kb()
    if n_entities is None:
        return list(kb)
    if isinstance(n_entities, bool) or not isinstance(n_entities, int):
        raise ConfigError(f"n_entities={n_entities!r} must be an int between 2 and {len(kb)}")
    if not 2 <= n_entities <= len(kb):
        raise ConfigError(f"n_entities={n_entities!r} is out of range; allowed [2, {len(kb)}]")
    return list(kb[:n_entities])


def _polygon(shape: str) -> list[tuple[float, float]]:
    """Unit-frame outline (coordinates in [-1, 1]) of the polygonal shapes."""

    def regular(
        n: int, radius: float = 1.0, phase: float = -math.pi / 2
    ) -> list[tuple[float, float]]:
        return [
            (
                radius * math.cos(phase + 2 * math.pi * k / n),
                radius * math.sin(phase + 2 * math.pi * k / n),
            )
            for k in range(n)
        ]

    if shape == "square":
        return [(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)]
    if shape == "triangle":
        return [(0.0, -1.0), (0.95, 0.72), (-0.95, 0.72)]
    if shape == "star":
        outer, inner = regular(5), regular(5, 0.45, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if shape == "diamond":
        return [(0.0, -1.0), (0.68, 0.0), (0.0, 1.0), (-0.68, 0.0)]
    if shape == "hexagon":
        return regular(6, 1.0, 0.0)
    if shape == "cross":
        a = 0.34
        return [
            (-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a),
            (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a),
        ]  # fmt: skip
    if shape == "arrow":
        return [
            (-1, -0.3),
            (0.15, -0.3),
            (0.15, -0.75),
            (1, 0),
            (0.15, 0.75),
            (0.15, 0.3),
            (-1, 0.3),
        ]
    raise ConfigError(f"unknown shape {shape!r}; choose one of {list(SHAPES)}")


def _shape_mask(shape: str, side: int, radius: float, angle: float) -> Image.Image:
    """An ``L`` mask of ``shape`` centred in a ``side`` x ``side`` tile, rotated by ``angle``
    degrees counter-clockwise (vector rotation: no raster resampling)."""
    from PIL import Image, ImageDraw

    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    c = side / 2.0
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))

    def at(x: float, y: float) -> tuple[float, float]:
        return (c + radius * (x * cos + y * sin), c + radius * (-x * sin + y * cos))

    def disc(cx: float, cy: float, r: float, fill: int) -> None:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)

    if shape == "circle":
        disc(c, c, radius, 255)
    elif shape == "ring":
        disc(c, c, radius, 255)
        disc(c, c, radius * 0.5, 0)
    elif shape == "crescent":
        disc(c, c, radius, 255)
        disc(*at(0.55, -0.1), radius * 0.8, 0)
    else:
        draw.polygon([at(x, y) for x, y in _polygon(shape)], fill=255)
    return mask


def _pattern_rgb(
    pattern: str, side: int, colour: np.ndarray, phase: float, angle: float
) -> np.ndarray:
    """``side`` x ``side`` x 3 float array of the fill pattern, rotated by ``angle``."""
    y0, x0 = np.mgrid[0:side, 0:side].astype(np.float32) - np.float32(side / 2.0)
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    xx, yy = x0 * cos - y0 * sin, x0 * sin + y0 * cos
    if pattern == "solid":
        on = np.ones((side, side), dtype=bool)
    elif pattern == "striped":
        period = side / 4.5
        on = ((xx + yy) / period + phase) % 2.0 < 1.0
    elif pattern == "dotted":
        period = side / 4.0
        dx = (xx / period + phase) % 1.0 - 0.5
        dy = (yy / period + phase) % 1.0 - 0.5
        on = dx * dx + dy * dy > 0.24**2
    elif pattern == "checkered":
        cell = side / 5.0
        on = (np.floor(xx / cell + phase) + np.floor(yy / cell + phase)) % 2 == 0
    else:
        raise ConfigError(f"unknown pattern {pattern!r}; choose one of {list(PATTERNS)}")
    return np.where(on[..., None], colour[None, None, :], _LIGHT[None, None, :])


def render_entity(
    entity: Entity,
    size: int,
    rng: np.random.Generator,
    *,
    jitter: bool = True,
) -> Image.Image:
    """Draw ``entity`` as an RGBA tile (transparent outside the shape).

    Args:
        entity: The entity to draw.
        size: Tile side in pixels (the shape fills about 80-95% of it).
        rng: Source of the variation; the same generator state gives the same image.
        jitter: Apply random rotation (+-20 degrees), scale (0.82-0.95 of the tile) and
            colour (+-14 per channel) variation. ``False`` draws the canonical view.

    Returns:
        A ``size`` x ``size`` RGBA image. Drawn at 2x and downsampled (anti-aliased).

    Raises:
        ConfigError: If ``size`` is smaller than 8 pixels.
    """
    from PIL import Image, ImageFilter

    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ConfigError(f"size={size!r} must be an int >= 8")
    if jitter:
        angle = float(rng.uniform(-20.0, 20.0))
        fill = float(rng.uniform(0.82, 0.95))
        colour = np.clip(np.asarray(entity.rgb, dtype=np.float64) + rng.uniform(-14, 14, 3), 0, 255)
        phase = float(rng.uniform(0.0, 1.0))
    else:
        angle, fill, phase = 0.0, 0.9, 0.0
        colour = np.asarray(entity.rgb, dtype=np.float64)
    big = 2 * size
    radius = big / 2.0 * fill
    if abs(angle) > 1e-6:
        radius /= 1.0 + 0.2 * abs(math.sin(math.radians(2 * angle)))  # keep corners inside
    mask = _shape_mask(entity.shape, big, radius, angle)
    # Outline = mask minus its erosion; a box blur + threshold erodes in O(1) per pixel.
    blurred = np.asarray(mask.filter(ImageFilter.BoxBlur(max(1.0, big * 0.018))))
    mask_arr = np.asarray(mask, dtype=np.float32) / 255.0
    inner_arr = (blurred >= 250).astype(np.float32)
    rgb = _pattern_rgb(entity.pattern, big, colour, phase, angle)
    outline = colour * 0.45
    rgb = rgb * inner_arr[..., None] + outline[None, None, :] * (1.0 - inner_arr[..., None])
    rgba = np.dstack([rgb, mask_arr * 255.0]).round().clip(0, 255).astype(np.uint8)
    tile = Image.fromarray(rgba, "RGBA")
    return tile.resize((size, size), Image.Resampling.LANCZOS)


def reference_images(
    entity: Entity,
    *,
    seed: int = 0,
    n: int = 2,
    size: int = 112,
) -> list[Image.Image]:
    """Render ``n`` reference images of ``entity`` on a plain background.

    Deterministic in ``(seed, entity.index)``; the first image is the canonical view and the
    others are jittered, so reference images differ from each other and from scenes.

    Args:
        entity: The entity.
        seed: World seed.
        n: Number of images (>= 1).
        size: Image side in pixels (>= 16).

    Returns:
        ``n`` RGB images of ``size`` x ``size``.
    """
    from PIL import Image

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n={n!r} must be an int >= 1")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ConfigError(f"size={size!r} must be an int >= 16")
    rng = np.random.default_rng([seed, entity.index, 7])
    out = []
    for k in range(n):
        side = round(size * (0.8 if k == 0 else rng.uniform(0.62, 0.85)))
        tile = render_entity(entity, side, rng, jitter=k > 0)
        canvas = Image.new("RGBA", (size, size), (*REFERENCE_BACKGROUND, 255))
        slack = size - side
        off = (
            (slack // 2, slack // 2)
            if k == 0
            else tuple(int(v) for v in rng.integers(0, slack + 1, 2))
        )
        canvas.alpha_composite(tile, (int(off[0]), int(off[1])))
        out.append(canvas.convert("RGB"))
    return out
