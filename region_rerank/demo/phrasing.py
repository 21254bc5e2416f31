"""Families of phrasings for the demo world's referring expressions and question frames.

A scene's target is named by *what* identifies it (a :class:`RefSpec`: a corner, an
extreme side, the largest / smallest object, a colour / pattern / shape, or a side of an
anchor object); a phrasing family says *how* that is worded. Families:

* ``default``: the generator's original wording (the shipped light policy was trained on
  it); a world made with it is byte-identical to one made before families existed.
* ``plain``, ``synonyms``, ``colloquial``: training families ("the top-left corner",
  "the biggest object", "the one with stripes", ...). ``train`` names all three.
* ``heldout``: words and question frames that no training family uses ("upper-left",
  "the item that is bigger than all the others", "covered in stripes", ...). It exists to
  measure how a policy copes with phrasings it never saw: use it for evaluation only.
* ``heldout2``: a second evaluation-only family ("the piece closest to the left edge",
  "the piece that takes up the least space", "painted red", ...), written after policies
  had been measured on ``heldout`` and before any was measured on it.

Each query draws its wording from its own random stream, separate from the scene's, so
one seed gives the same scenes (images, targets, boxes) under every family and only the
questions differ.

Example:
    >>> spec = RefSpec("size", "smallest")
    >>> FAMILIES["plain"].refs(spec)[0]
    'the smallest object'
    >>> FAMILIES["heldout"].refs(spec)[0]
    'the item that is smaller than all the others'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from region_rerank.demo.entities import PATTERN_WORDS
from region_rerank.errors import ConfigError

__all__ = [
    "RefSpec",
    "PhrasingFamily",
    "FAMILIES",
    "TRAIN_FAMILIES",
    "HELDOUT_FAMILIES",
    "resolve_phrasing",
]


@dataclass(frozen=True)
class RefSpec:
    """What identifies a scene's target, independent of wording.

    Attributes:
        kind: ``corner`` | ``extreme`` | ``size`` | ``colour`` | ``pattern`` | ``shape`` |
            ``relation``.
        value: The corner (``top-left``...), side (``left``...), ``largest`` /
            ``smallest``, colour, pattern or shape name, or the relation's side.
        anchor: For relations, the anchor's ``(colour, shape)``.
    """

    kind: str
    value: str
    anchor: tuple[str, str] | None = None


#: Nouns for the patterns ("the thing with stripes").
PATTERN_NOUNS: dict[str, str] = {
    "solid": "a single colour",
    "striped": "stripes",
    "dotted": "dots",
    "checkered": "checks",
}

_Render = Callable[[RefSpec], tuple[str, ...]]


@dataclass(frozen=True)
class PhrasingFamily:
    """How one family words each kind of reference, and its question frames.

    Attributes:
        name: The family's name.
        words: ``kind -> spec -> the ways of saying it`` (one is drawn per query).
        templates: Question frames, each with one ``{ref}`` placeholder.
    """

    name: str
    words: Mapping[str, _Render]
    templates: tuple[str, ...]

    def refs(self, spec: RefSpec) -> tuple[str, ...]:
        """Every wording of ``spec`` in this family (at least one)."""
        try:
            return self.words[spec.kind](spec)
        except KeyError as exc:
            raise ConfigError(f"phrasing {self.name!r} cannot word {spec!r}") from exc


def _table(options: Mapping[str, Sequence[str]]) -> _Render:
    return lambda spec: tuple(options[spec.value])


def _fill(*forms: str) -> _Render:
    """Forms with ``{value}`` (and ``{pattern_word}``, ``{pattern_noun}``)."""

    def render(spec: RefSpec) -> tuple[str, ...]:
        fields = {
            "value": spec.value,
            "pattern_word": PATTERN_WORDS.get(spec.value, spec.value),
            "pattern_noun": PATTERN_NOUNS.get(spec.value, spec.value),
        }
        return tuple(f.format(**fields) for f in forms)

    return render


def _relation(sides: Mapping[str, Sequence[str]], noun: str) -> _Render:
    def render(spec: RefSpec) -> tuple[str, ...]:
        colour, shape = spec.anchor or ("", "")
        return tuple(f"{noun} {w} the {colour} {shape}" for w in sides[spec.value])

    return render


_CORNER_WORDS = ("top-left", "top-right", "bottom-left", "bottom-right")

#: The original wording (one form per reference) and frames.
_DEFAULT = PhrasingFamily(
    "default",
    {
        "corner": _table({c: (f"the object in the {c} corner",) for c in _CORNER_WORDS}),
        "extreme": _table(
            {
                "left": ("the leftmost object",),
                "right": ("the rightmost object",),
                "top": ("the topmost object",),
                "bottom": ("the bottommost object",),
            }
        ),
        "size": _table({"largest": ("the largest object",), "smallest": ("the smallest object",)}),
        "colour": _fill("the {value} object"),
        "pattern": _fill("the {pattern_word} object"),
        "shape": _fill("the {value}"),
        "relation": _relation(
            {"left": ("left of",), "right": ("right of",), "top": ("above",), "bottom": ("below",)},
            "the object",
        ),
    },
    (
        "When was {ref} first recorded?",
        "What is the name of {ref}?",
        "Where was {ref} first recorded?",
        "Which collection holds the best-known specimen of {ref}?",
        "What is the catalogue number of {ref}?",
        "What is {ref} called?",
        "In which region was {ref} first found?",
        "Tell me the name of {ref}.",
    ),
)

_TRAIN_FRAMES = (
    *_DEFAULT.templates,
    "Do you know what {ref} is called?",
    "Give me the catalogue number for {ref}.",
    "What's {ref}?",
    "Who first described {ref}?",
)

_PLAIN = PhrasingFamily("plain", _DEFAULT.words, _TRAIN_FRAMES)

_SYNONYMS = PhrasingFamily(
    "synonyms",
    {
        "corner": _table(
            {
                c: (f"the object at the {c.replace('-', ' ')}", f"the thing in the {c} corner")
                for c in _CORNER_WORDS
            }
        ),
        "extreme": _table(
            {
                "left": ("the object furthest to the left", "the left-most thing"),
                "right": ("the object furthest to the right", "the right-most thing"),
                "top": ("the object nearest the top", "the top-most thing"),
                "bottom": ("the object nearest the bottom", "the bottom-most thing"),
            }
        ),
        "size": _table(
            {
                "largest": ("the biggest object", "the largest thing"),
                "smallest": ("the tiniest object", "the smallest thing"),
            }
        ),
        "colour": _fill("the {value} thing", "the object that is {value}"),
        "pattern": _fill("the thing with {pattern_noun}", "the {pattern_word} thing"),
        "shape": _fill("the {value} shape", "the {value}-shaped object"),
        "relation": _relation(
            {
                "left": ("to the left of",),
                "right": ("to the right of",),
                "top": ("on top of",),
                "bottom": ("beneath",),
            },
            "the object",
        ),
    },
    _TRAIN_FRAMES,
)

_COLLOQUIAL = PhrasingFamily(
    "colloquial",
    {
        "corner": _table({c: (f"the one in the {c.replace('-', ' ')}",) for c in _CORNER_WORDS}),
        "extreme": _table(
            {
                "left": ("the one on the far left",),
                "right": ("the one on the far right",),
                "top": ("the one at the very top",),
                "bottom": ("the one at the very bottom",),
            }
        ),
        "size": _table({"largest": ("the big one",), "smallest": ("the little one",)}),
        "colour": _fill("the {value} one"),
        "pattern": _fill("the one with {pattern_noun}"),
        "shape": _fill("the {value} one"),
        "relation": _relation(
            {"left": ("left of",), "right": ("right of",), "top": ("above",), "bottom": ("below",)},
            "the one",
        ),
    },
    _TRAIN_FRAMES,
)


def _upper_lower(corner: str) -> str:
    return corner.replace("top", "upper").replace("bottom", "lower")


_HELDOUT = PhrasingFamily(
    "heldout",
    {
        "corner": _table(
            {c: (f"the item in the {_upper_lower(c)} corner",) for c in _CORNER_WORDS}
        ),
        "extreme": _table(
            {
                "left": ("the item farthest west",),
                "right": ("the item farthest east",),
                "top": ("the highest item",),
                "bottom": ("the lowest item",),
            }
        ),
        "size": _table(
            {
                "largest": ("the item that is bigger than all the others",),
                "smallest": ("the item that is smaller than all the others",),
            }
        ),
        "colour": _fill("the item coloured {value}"),
        "pattern": _fill("the item covered in {pattern_noun}"),
        "shape": _fill("the item shaped like a {value}"),
        "relation": _relation(
            {
                "left": ("on the left-hand side of",),
                "right": ("on the right-hand side of",),
                "top": ("sitting over",),
                "bottom": ("underneath",),
            },
            "the item",
        ),
    },
    (
        "Could you tell me in what year {ref} was documented for the first time?",
        "I'm curious about {ref}: what do people call it?",
        "{ref} -- which museum keeps its most famous example?",
        "Looking at {ref}, where did it originally come from?",
        "Name {ref}, please.",
        "What catalogue entry describes {ref}?",
    ),
)

#: A second evaluation-only family, written after policies had been measured on the first
#: and before any policy was measured on it: a check that a figure measured on ``heldout``
#: is not a property of that one family.
_HELDOUT2 = PhrasingFamily(
    "heldout2",
    {
        "corner": _table(
            {c: (f"the piece near the {c.replace('-', ' ')} of the image",) for c in _CORNER_WORDS}
        ),
        "extreme": _table(
            {
                "left": ("the piece closest to the left edge",),
                "right": ("the piece closest to the right edge",),
                "top": ("the piece closest to the top edge",),
                "bottom": ("the piece closest to the bottom edge",),
            }
        ),
        "size": _table(
            {
                "largest": ("the piece that takes up the most space",),
                "smallest": ("the piece that takes up the least space",),
            }
        ),
        "colour": _fill("the piece painted {value}"),
        "pattern": _fill("the piece with a {pattern_word} texture"),
        "shape": _fill("the piece in the shape of a {value}"),
        "relation": _relation(
            {
                "left": ("just left of",),
                "right": ("just right of",),
                "top": ("directly above",),
                "bottom": ("directly below",),
            },
            "the piece",
        ),
    },
    (
        "Can you identify {ref}? I need its name.",
        "For {ref}, what's the catalogue number?",
        "Where does {ref} come from originally?",
        "In which year was {ref} first recorded?",
        "Who holds the best-known example of {ref}?",
        "What do you call {ref}?",
    ),
)

#: Every family by name.
FAMILIES: dict[str, PhrasingFamily] = {
    f.name: f for f in (_DEFAULT, _PLAIN, _SYNONYMS, _COLLOQUIAL, _HELDOUT, _HELDOUT2)
}
#: The families a policy may be trained on.
TRAIN_FAMILIES: tuple[str, ...] = ("plain", "synonyms", "colloquial")
#: Families kept for evaluation only.
HELDOUT_FAMILIES: tuple[str, ...] = ("heldout", "heldout2")
_ALIASES = {"train": TRAIN_FAMILIES}


def resolve_phrasing(phrasing: str | Sequence[str]) -> tuple[str, ...]:
    """Family names from ``"default"``, ``"train"``, ``"heldout"``, ``"plain,synonyms"`` or
    a list of names.

    Raises:
        ConfigError: An unknown family, or ``default`` mixed with other families.
    """
    items = phrasing.split(",") if isinstance(phrasing, str) else list(phrasing)
    names: list[str] = []
    for raw in items:
        name = str(raw).strip()
        for n in _ALIASES.get(name, (name,)):
            if n not in FAMILIES:
                allowed = sorted({*FAMILIES, *_ALIASES})
                raise ConfigError(f"unknown phrasing family {n!r}; allowed: {allowed}")
            if n not in names:
                names.append(n)
    if not names:
        raise ConfigError("phrasing: name at least one family")
    if "default" in names and len(names) > 1:
        raise ConfigError("phrasing 'default' (the original wording) cannot be mixed")
    return tuple(names)
