"""Query scenes: a target entity among distractors and clutter, a referring question, the box.

Each scene is built so the question is *needed* to find the target and is unambiguous:

* ``position`` -- "the object in the top-left corner" (target centre in that quadrant and
  at most 0.75x the corner distance of any other object) or "the leftmost object" (target
  centre at least 6% of the canvas width left of every other centre, left edge too).
* ``size`` -- "the largest / smallest object" (box area at least 1.3x apart from all others).
* ``attribute`` -- "the striped object", "the red object", "the star": no other object in
  the scene shares that colour, pattern or shape.
* ``relation`` -- "the object left of the red star": the anchor is the only object of its
  colour and shape; the target is entirely on that side of it with overlapping span, and
  no other object's centre is on that side with an overlapping span.

Every query uses its own generator seeded by ``(seed, crc32(split), index)``, so a query
does not depend on the ones before it and splits with the same seed still differ.
"""

from __future__ import annotations

import os
import re
import string
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from region_rerank._validate import check_choice, check_range
from region_rerank.demo._layout import BoxT, compose, layout
from region_rerank.demo.entities import Entity, render_entity
from region_rerank.demo.phrasing import FAMILIES, RefSpec, resolve_phrasing
from region_rerank.errors import ConfigError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "QUESTION_TYPES",
    "DEFAULT_TEMPLATES",
    "HELDOUT_TEMPLATES",
    "SceneConfig",
    "SceneObject",
    "SceneQuery",
    "MAX_PARAPHRASES",
    "load_templates",
    "validate_templates",
    "generate_queries",
    "iter_queries",
]

QUESTION_TYPES: tuple[str, ...] = ("position", "size", "attribute", "relation")
#: Default question phrasings; ``{ref}`` is replaced by the referring expression.
DEFAULT_TEMPLATES: tuple[str, ...] = FAMILIES["default"].templates
#: Held-out phrasings (different wording) for robustness tests of croppers.
HELDOUT_TEMPLATES: tuple[str, ...] = FAMILIES["heldout"].templates

_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
_SIDES = ("left", "right", "top", "bottom")
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_ATTEMPTS = 60
#: Most other wordings a query may carry (``SceneConfig.paraphrases``).
MAX_PARAPHRASES = 32


def validate_templates(templates: Sequence[str], source: str = "templates") -> tuple[str, ...]:
    """Check that every template has exactly the ``{ref}`` placeholder; return a tuple.

    Raises:
        ConfigError: Naming ``source`` and the bad template.
    """
    if isinstance(templates, str) or not templates:
        raise ConfigError(f"{source}: need a non-empty list of templates, got {templates!r}")
    out = []
    for i, tpl in enumerate(templates):
        where = f"{source}[{i}]"
        if not isinstance(tpl, str):
            raise ConfigError(f"{where}: templates must be str, got {type(tpl).__name__}")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(tpl) if f is not None]
        except ValueError as exc:
            raise ConfigError(f"{where}={tpl!r} is not a valid template: {exc}") from exc
        if "ref" not in fields:
            raise ConfigError(f"{where}={tpl!r} has no {{ref}} placeholder")
        if any(f != "ref" for f in fields):
            raise ConfigError(f"{where}={tpl!r}: only the {{ref}} placeholder is allowed")
        out.append(tpl.strip())
    return tuple(out)


def load_templates(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Read question templates: one per line, blank lines and ``#`` comments ignored.

    Raises:
        ConfigError: If the file is missing, empty or has a line without ``{ref}``.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"templates file {str(p)!r} cannot be read: {exc}") from exc
    kept = [(n, ln.strip()) for n, ln in enumerate(lines, 1) if ln.strip()]
    kept = [(n, ln) for n, ln in kept if not ln.startswith("#")]
    if not kept:
        raise ConfigError(f"templates file {str(p)!r} has no templates")
    for n, ln in kept:
        validate_templates([ln], source=f"templates file {str(p)!r} line {n}")
    return tuple(ln for _, ln in kept)


def _pair(name: str, value: Any, kind: type, low: float, high: float) -> tuple[Any, Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"{name}={value!r} must be a pair ({kind.__name__}, {kind.__name__})")
    for i, v in enumerate(value):
        if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
            raise ConfigError(f"{name}[{i}]={v!r} must be an int")
        check_range(f"{name}[{i}]", v, low, high)
    return (kind(value[0]), kind(value[1]))


@dataclass(frozen=True)
class SceneConfig:
    """Parameters of the query-scene generator (validated on construction).

    Attributes:
        seed: Base seed (int >= 0).
        n_queries: Number of queries (>= 0).
        distractors: ``(min, max)`` number of distractor entities, 1..12.
        target_scale: ``(min, max)`` target size as a fraction of the shorter canvas side.
        distractor_scale: ``(min, max)`` distractor size, same unit.
        clutter: Background clutter level in [0, 1] (texture, lines, specks, pixel noise).
        canvas_size: ``(width, height)`` in pixels, each 64..2048.
        templates: Question templates (each with ``{ref}``), or a path to a templates file
            (one per line, ``#`` comments); a path is loaded and stored as a tuple.
        split: Split name (letters, digits, ``_``, ``-``); part of the seed and query ids.
        question_types: Which of :data:`QUESTION_TYPES` to generate (cycled in order).
        phrasing: Phrasing families of the references and frames
            (:mod:`region_rerank.demo.phrasing`): ``"default"`` (the original wording),
            ``"train"``, ``"heldout"``, or family names (``"plain,synonyms"``); stored as a
            tuple of names. With families other than ``default`` the frames come from the
            families unless ``templates`` are given. One seed gives the same scenes under
            every phrasing; only the questions differ.
        balance_subtypes: Alternate the sub-kinds within a question type (as many
            "smallest" as "largest" questions, as many corner as extreme-side ones)
            instead of drawing them at random (layouts that fail are retried with the same
            sub-kind). Changes the scenes.
        paraphrases: Up to this many other wordings of each question (0-32; default 0:
            none), drawn from the same families and frames by a stream of their own, so
            the scenes and the questions do not change; repeats of the question are left
            out. Training can sample among them (``train proposal --resample-wording``).

    Defaults were tuned against the shipped demo scorer (top-20 pools from full-image
    search over the 320 KB entries): full-image pool coverage ~70%, CondR@1 ~0.33 with the
    full image vs ~0.85 with the ground-truth crop. Trade-off: this image tower needs the
    target to be a large share of the scene for coverage >= 60%, yet a target always
    larger than every distractor lets "crop the biggest object" stand in for reading the
    question (it is the largest in ~72% of non-size queries here, ~96% with distractors at
    0.16-0.30; with equal size ranges coverage drops to ~56%).

    Raises:
        ConfigError: Naming the invalid field and what is allowed.
    """

    seed: int = 0
    n_queries: int = 500
    distractors: tuple[int, int] = (1, 3)
    target_scale: tuple[float, float] = (0.3, 0.45)
    distractor_scale: tuple[float, float] = (0.22, 0.38)
    clutter: float = 0.2
    canvas_size: tuple[int, int] = (224, 224)
    templates: Any = DEFAULT_TEMPLATES
    split: str = "test"
    question_types: tuple[str, ...] = QUESTION_TYPES
    phrasing: Any = "default"
    balance_subtypes: bool = False
    paraphrases: int = 0
    templates_source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("seed", "n_queries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}={value!r} must be an int >= 0")
            check_range(name, value, 0)
        setv = object.__setattr__
        setv(self, "distractors", _pair("distractors", self.distractors, int, 1, 12))
        setv(self, "target_scale", _pair("target_scale", self.target_scale, float, 0.02, 0.6))
        setv(
            self,
            "distractor_scale",
            _pair("distractor_scale", self.distractor_scale, float, 0.02, 0.6),
        )
        setv(self, "canvas_size", _pair("canvas_size", self.canvas_size, int, 64, 2048))
        for name in ("distractors", "target_scale", "distractor_scale"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"{name}={(lo, hi)!r}: min must be <= max")
        check_range("clutter", self.clutter, 0.0, 1.0)
        if not isinstance(self.split, str) or not _SPLIT_RE.match(self.split):
            raise ConfigError(f"split={self.split!r} must match {_SPLIT_RE.pattern}")
        qtypes = self.question_types
        if isinstance(qtypes, str) or not isinstance(qtypes, Sequence) or not qtypes:
            raise ConfigError(f"question_types={qtypes!r} must be a non-empty list")
        for q in qtypes:
            check_choice("question_types", q, QUESTION_TYPES)
        setv(self, "question_types", tuple(qtypes))
        setv(self, "phrasing", resolve_phrasing(self.phrasing))
        if not isinstance(self.balance_subtypes, bool):
            raise ConfigError(f"balance_subtypes={self.balance_subtypes!r} must be a bool")
        if isinstance(self.paraphrases, bool) or not isinstance(self.paraphrases, int):
            raise ConfigError(
                f"paraphrases={self.paraphrases!r} must be an int in [0, {MAX_PARAPHRASES}]"
            )
        check_range("paraphrases", self.paraphrases, 0, MAX_PARAPHRASES)
        if isinstance(self.templates, (str, os.PathLike)):
            setv(self, "templates_source", str(self.templates))
            setv(self, "templates", load_templates(self.templates))
        else:
            setv(self, "templates", validate_templates(self.templates))


@dataclass(frozen=True)
class SceneObject:
    """One entity placed in a scene: its KB id and tight pixel box ``(x1, y1, x2, y2)``."""

    entity_id: str
    box: BoxT


@dataclass(frozen=True, eq=False)
class SceneQuery:
    """A generated query with its known answer.

    Attributes:
        id: ``"{split}-{index:05d}"``.
        image: The RGB scene.
        question: The question (a template filled with ``ref``).
        positive: KB id of the target entity.
        box: Tight ground-truth box of the target, integer pixels ``(x1, y1, x2, y2)``
            with exclusive ``x2, y2``.
        question_type: One of :data:`QUESTION_TYPES`.
        ref: The referring expression ("the striped object").
        detail: Sub-kind (``"corner:top-left"``, ``"largest"``, ``"pattern"``, ``"left"``...).
        objects: Every placed object, the target first.
        paraphrases: Other wordings of the question (``SceneConfig.paraphrases``).
    """

    id: str
    image: Image.Image
    question: str
    positive: str
    box: BoxT
    question_type: str
    ref: str
    detail: str
    objects: tuple[SceneObject, ...]
    paraphrases: tuple[str, ...] = ()


def _tight_tile(entity: Entity, side: int, rng: np.random.Generator) -> Image.Image:
    tile = render_entity(entity, side, rng)
    bbox = tile.getchannel("A").point(lambda a: 255 if a >= 24 else 0).getbbox()
    return tile.crop(bbox) if bbox else tile


def _pick(
    kb: Sequence[Entity], rng: np.random.Generator, n: int, ok: Callable[[Entity], bool]
) -> list[Entity]:
    pool = [e for e in kb if ok(e)]
    if len(pool) < n:
        raise ConfigError(f"the KB has only {len(pool)} entities usable as distractors, need {n}")
    return [pool[int(i)] for i in rng.choice(len(pool), size=n, replace=False)]


def _choose(
    cfg: SceneConfig,
    kb: Sequence[Entity],
    rng: np.random.Generator,
    qtype: str,
    n_d: int,
    subtype: int | None,
) -> tuple[Entity, list[Entity], RefSpec, str]:
    """Pick target, distractors (anchor first for relations), what names the target and
    the detail. ``subtype`` (0 / 1) fixes size and position sub-kinds (balanced worlds)."""
    target = kb[int(rng.integers(len(kb)))]
    if qtype == "attribute":
        kind = ("colour", "pattern", "shape")[int(rng.integers(3))]
        value = getattr(target, kind)
        others = _pick(kb, rng, n_d, lambda e: getattr(e, kind) != value)
        return target, others, RefSpec(kind, value), kind
    if qtype == "relation":
        tkey = (target.colour, target.shape)
        anchor = _pick(kb, rng, 1, lambda e: (e.colour, e.shape) != tkey)[0]
        akey = (anchor.colour, anchor.shape)
        rest = _pick(kb, rng, n_d - 1, lambda e: e is not target and (e.colour, e.shape) != akey)
        side = _SIDES[int(rng.integers(4))]
        return target, [anchor, *rest], RefSpec("relation", side, akey), side
    others = _pick(kb, rng, n_d, lambda e: e is not target)
    if qtype == "size":
        detail = ("largest", "smallest")[int(rng.integers(2)) if subtype is None else subtype]
        return target, others, RefSpec("size", detail), detail
    if (rng.random() < 0.5) if subtype is None else subtype == 0:
        corner = _CORNERS[int(rng.integers(4))]
        return target, others, RefSpec("corner", corner), f"corner:{corner}"
    side = _SIDES[int(rng.integers(4))]
    return target, others, RefSpec("extreme", side), f"extreme:{side}"


def _question(
    cfg: SceneConfig, spec: RefSpec, rng: np.random.Generator, index: int
) -> tuple[str, str]:
    """The reference and the question. ``default`` draws the frame from the scene's stream
    (as the generator always did); other families draw from a stream of their own, so the
    scene does not depend on the phrasing."""
    if cfg.phrasing == ("default",):
        ref = FAMILIES["default"].refs(spec)[0]
        template = cfg.templates[int(rng.integers(len(cfg.templates)))]
        return ref, _sentence(template, ref)
    words = np.random.default_rng([cfg.seed, zlib.crc32(cfg.split.encode()), index, 7919])
    return _worded(cfg, spec, words)


def _worded(cfg: SceneConfig, spec: RefSpec, words: np.random.Generator) -> tuple[str, str]:
    """A family, a form of the reference and a frame drawn from ``words``."""
    family = FAMILIES[cfg.phrasing[int(words.integers(len(cfg.phrasing)))]]
    forms = family.refs(spec)
    ref = forms[int(words.integers(len(forms)))]
    frames = family.templates if cfg.templates == DEFAULT_TEMPLATES else cfg.templates
    return ref, _sentence(frames[int(words.integers(len(frames)))], ref)


def _sentence(template: str, ref: str) -> str:
    question = template.format(ref=ref)
    return question[:1].upper() + question[1:]


def _paraphrases(cfg: SceneConfig, spec: RefSpec, question: str, index: int) -> tuple[str, ...]:
    """Up to ``cfg.paraphrases`` other wordings of ``question`` from a stream of their own
    (the scene's and the question's streams are untouched)."""
    if not cfg.paraphrases:
        return ()
    words = np.random.default_rng([cfg.seed, zlib.crc32(cfg.split.encode()), index, 104729])
    seen = {question}
    out: list[str] = []
    for _ in range(4 * cfg.paraphrases):
        _, text = _worded(cfg, spec, words)
        if text not in seen:
            seen.add(text)
            out.append(text)
            if len(out) == cfg.paraphrases:
                break
    return tuple(out)


def _sizes(
    cfg: SceneConfig, rng: np.random.Generator, qtype: str, detail: str, n_d: int
) -> tuple[float, list[float]]:
    tlo, thi = cfg.target_scale
    dlo, dhi = cfg.distractor_scale
    if qtype == "size" and detail == "largest":
        t = float(rng.uniform((tlo + thi) / 2, thi))
        cap = t / 1.35
        return t, [float(rng.uniform(min(dlo, 0.75 * cap), min(dhi, cap))) for _ in range(n_d)]
    if qtype == "size":
        t = float(rng.uniform(tlo, (tlo + thi) / 2))
        floor = t * 1.35
        return t, [float(rng.uniform(max(dlo, floor), max(dhi, 1.2 * floor))) for _ in range(n_d)]
    return float(rng.uniform(tlo, thi)), [float(rng.uniform(dlo, dhi)) for _ in range(n_d)]


def _one_query(cfg: SceneConfig, kb: Sequence[Entity], index: int) -> SceneQuery:
    rng = np.random.default_rng([cfg.seed, zlib.crc32(cfg.split.encode()), index])
    qtype = cfg.question_types[index % len(cfg.question_types)]
    lo, hi = cfg.distractors
    n_d = int(rng.integers(lo, hi + 1))
    side = min(cfg.canvas_size)
    subtype = (index // len(cfg.question_types)) % 2 if cfg.balance_subtypes else None
    for attempt in range(_MAX_ATTEMPTS):
        if attempt and attempt % 10 == 0 and n_d > 1:
            n_d -= 1  # crowded: drop a distractor every 10 failed attempts
        target, others, spec, detail = _choose(cfg, kb, rng, qtype, n_d, subtype)
        t_scale, d_scales = _sizes(cfg, rng, qtype, detail, n_d)
        entities = [target, *others]
        tiles = [
            _tight_tile(e, max(8, round(s * side)), rng)
            for e, s in zip(entities, [t_scale, *d_scales])
        ]
        boxes = layout(cfg.canvas_size, rng, qtype, detail, tiles)
        if boxes is None:
            continue
        image = compose(cfg.canvas_size, cfg.clutter, rng, tiles, boxes)
        ref, question = _question(cfg, spec, rng, index)
        return SceneQuery(
            id=f"{cfg.split}-{index:05d}",
            image=image,
            question=question,
            positive=target.id,
            box=boxes[0],
            question_type=qtype,
            ref=ref,
            detail=detail,
            objects=tuple(SceneObject(e.id, b) for e, b in zip(entities, boxes)),
            paraphrases=_paraphrases(cfg, spec, question, index),
        )
    raise ConfigError(
        f"could not lay out query {index} of split {cfg.split!r} in {_MAX_ATTEMPTS} attempts: "
        f"the scene is too crowded (lower distractors={cfg.distractors}, target_scale="
        f"{cfg.target_scale} or distractor_scale={cfg.distractor_scale}, or enlarge canvas_size)"
    )


def iter_queries(config: SceneConfig, kb: Sequence[Entity]) -> Iterator[SceneQuery]:
    """Yield ``config.n_queries`` scenes one at a time (same content as
    :func:`generate_queries`).

    Raises:
        ConfigError: If the KB is too small or a scene cannot be laid out.
    """
    if len(kb) < config.distractors[1] + 2:
        raise ConfigError(
            f"the KB has {len(kb)} entities; distractors={config.distractors} needs at least "
            f"{config.distractors[1] + 2}"
        )
    for i in range(config.n_queries):
        yield _one_query(config, kb, i)


def generate_queries(config: SceneConfig, kb: Sequence[Entity]) -> list[SceneQuery]:
    """Generate the query scenes of one split.

    Args:
        config: Generator parameters.
        kb: The knowledge base (from :func:`region_rerank.demo.entities.build_kb`).

    Returns:
        ``config.n_queries`` :class:`SceneQuery` objects; deterministic in ``config``.

    Raises:
        ConfigError: If the KB is too small or a scene cannot be laid out.
    """
    return list(iter_queries(config, kb))
