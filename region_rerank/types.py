"""Frozen, typed data objects exchanged by croppers, scorers and the reranker.

All classes are immutable: the library never changes a caller's object. Image fields hold
anything :func:`region_rerank.images.load_image` accepts (PIL image, path, bytes, base64 or
data URI, numpy array, torch tensor); they are decoded lazily.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from region_rerank.errors import CandidateError, InputTypeError, InvalidBoxError

__all__ = [
    "ImageLike",
    "Query",
    "Candidate",
    "Box",
    "CropAction",
    "CropDecision",
    "ScoredCandidate",
    "RerankResult",
]

#: Anything :func:`region_rerank.images.load_image` can decode.
ImageLike = Any


def _freeze_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


class _PicklesFrozenMappings:
    """Pickle / copy support for frozen dataclasses holding read-only mapping views (which
    cannot be pickled): the views are stored as plain dicts and frozen again on load."""

    _frozen_mappings: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in self._frozen_mappings:
            state[name] = dict(state[name])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            frozen = _freeze_mapping(value) if key in self._frozen_mappings else value
            object.__setattr__(self, key, frozen)


@dataclass(frozen=True, eq=False)
class Query:
    """A multimodal query: the image the user asks about and the question.

    Attributes:
        image: The query image (any :data:`ImageLike`).
        question: The natural-language question about the image.
        id: Optional identifier, echoed in results and logs.
    """

    image: ImageLike
    question: str
    id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.question, str):
            raise InputTypeError(f"Query.question must be str, got {type(self.question).__name__}")
        if self.image is None:
            raise InputTypeError("Query.image is required (got None)")


@dataclass(frozen=True, eq=False)
class Candidate(_PicklesFrozenMappings):
    """A retrieved knowledge-base entry to be re-ranked.

    Attributes:
        id: Identifier of the entry (need not be unique; duplicates are kept).
        text: Entry text (title + first sections), or ``None``.
        images: Zero or more entry images. A single image is accepted and wrapped.
        metadata: Free-form metadata, stored read-only.
        retrieval_score: The first-stage retriever's score, used by the ``"mix"`` fusion.
        embedding: Optional precomputed candidate embedding (1-D), used instead of
            running the scorer on this candidate.
    """

    id: str
    text: str | None = None
    images: tuple[ImageLike, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    retrieval_score: float | None = None
    embedding: Any = None

    _frozen_mappings = ("metadata",)

    def __post_init__(self) -> None:
        imgs = self.images
        if imgs is None:
            imgs = ()
        elif not isinstance(imgs, (tuple, list)):
            imgs = (imgs,)
        object.__setattr__(self, "images", tuple(imgs))
        object.__setattr__(self, "metadata", _freeze_mapping(self.metadata))
        if not isinstance(self.id, str):
            object.__setattr__(self, "id", str(self.id))
        if self.text is not None and not isinstance(self.text, str):
            raise CandidateError(
                f"Candidate {self.id!r}: text must be str or None, got {type(self.text).__name__}"
            )

    @property
    def has_content(self) -> bool:
        """True when the candidate has text, an image or a precomputed embedding."""
        return (
            bool(self.text and self.text.strip())
            or bool(self.images)
            or (self.embedding is not None)
        )


@dataclass(frozen=True)
class Box:
    """An axis-aligned box ``(x1, y1, x2, y2)`` = (left, top, right, bottom) in pixels of the
    original image. Always finite with ``x2 > x1`` and ``y2 > y1``.

    Raises:
        InvalidBoxError: On NaN/inf, inverted or zero-area coordinates.
    """

    x1: float
    y1: float
    x2: float
    y2: float

    def __post_init__(self) -> None:
        coords = (self.x1, self.y1, self.x2, self.y2)
        try:
            values = tuple(float(c) for c in coords)
        except (TypeError, ValueError) as exc:
            raise InvalidBoxError(f"box coordinates must be numbers, got {coords!r}") from exc
        if not all(math.isfinite(v) for v in values):
            raise InvalidBoxError(f"box has non-finite coordinates: {coords!r}")
        if values[2] <= values[0] or values[3] <= values[1]:
            raise InvalidBoxError(f"box is inverted or has zero area: {coords!r}")
        for name, v in zip(("x1", "y1", "x2", "y2"), values):
            object.__setattr__(self, name, v)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return self.width * self.height

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def as_int_tuple(self) -> tuple[int, int, int, int]:
        """Integer pixel box covering this box (floor of the start, ceil of the end)."""
        return (
            math.floor(self.x1),
            math.floor(self.y1),
            math.ceil(self.x2),
            math.ceil(self.y2),
        )


class CropAction(str, enum.Enum):
    """The policy's decision: keep the whole image or crop one region."""

    FULL = "FULL"
    REGION = "REGION"


@dataclass(frozen=True)
class CropDecision:
    """What a cropper decided for one query.

    Attributes:
        action: :attr:`CropAction.FULL` or :attr:`CropAction.REGION`.
        box: The region in original-image pixels (``None`` for FULL).
        image_size: ``(width, height)`` of the original image, when known.
        raw_output: The policy's raw output (VLM text, detector summary) for debugging.
        confidence: Detector / policy confidence of the box, when available.
        source: Name of the cropper that decided.
        reason: Why a FULL was chosen when it was a fallback (unparseable output, error...).
    """

    action: CropAction
    box: Box | None = None
    image_size: tuple[int, int] | None = None
    raw_output: str | None = None
    confidence: float | None = None
    source: str = ""
    reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", CropAction(self.action))
        if self.action is CropAction.REGION and self.box is None:
            raise InvalidBoxError("a REGION decision needs a box")
        if self.action is CropAction.FULL and self.box is not None:
            raise InvalidBoxError("a FULL decision must not carry a box")

    @classmethod
    def full(cls, **kwargs: Any) -> CropDecision:
        """A FULL decision (keyword arguments as the dataclass fields)."""
        return cls(action=CropAction.FULL, **kwargs)

    @classmethod
    def region(cls, box: Box, **kwargs: Any) -> CropDecision:
        """A REGION decision for ``box``."""
        return cls(action=CropAction.REGION, box=box, **kwargs)

    @property
    def is_crop(self) -> bool:
        return self.action is CropAction.REGION

    @property
    def area_fraction(self) -> float:
        """Crop area over image area (1.0 for FULL or when the image size is unknown)."""
        if self.box is None or not self.image_size:
            return 1.0
        w, h = self.image_size
        return self.box.area / float(max(1, w * h))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (used in node / document metadata)."""
        return {
            "action": self.action.value,
            "box": list(self.box.as_tuple()) if self.box else None,
            "image_size": list(self.image_size) if self.image_size else None,
            "confidence": self.confidence,
            "source": self.source,
            "reason": self.reason,
        }


@dataclass(frozen=True, eq=False)
class ScoredCandidate:
    """A candidate with its re-ranking score.

    Attributes:
        candidate: The caller's candidate object (unchanged).
        score: The fused score used for ordering.
        rank: 1-based rank after re-ranking.
        input_index: 0-based position in the input list.
        crop_score: Similarity to the chosen view (crop, or full image on FULL).
        full_score: Similarity to the full image, when it was computed.
    """

    candidate: Candidate
    score: float
    rank: int
    input_index: int
    crop_score: float | None = None
    full_score: float | None = None


@dataclass(frozen=True, eq=False)
class RerankResult(_PicklesFrozenMappings):
    """The outcome of re-ranking one query.

    Attributes:
        query_id: ``Query.id``.
        ranking: Candidates best first (all of them, or the first ``top_n``).
        decision: The crop decision that was used.
        timings: Seconds per stage (``decode``, ``crop``, ``embed_query``,
            ``embed_candidates``, ``score``, ``total``).
        fallback: True when an error was caught and the result degraded (see ``error``).
        error: Text of the caught error in fallback mode.
    """

    query_id: str | None
    ranking: tuple[ScoredCandidate, ...]
    decision: CropDecision
    timings: Mapping[str, float] = field(default_factory=dict)
    fallback: bool = False
    error: str | None = None

    _frozen_mappings = ("timings",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranking", tuple(self.ranking))
        object.__setattr__(self, "timings", _freeze_mapping(self.timings))

    @property
    def candidates(self) -> list[Candidate]:
        """The candidates in ranked order."""
        return [s.candidate for s in self.ranking]

    @property
    def ids(self) -> list[str]:
        return [s.candidate.id for s in self.ranking]
