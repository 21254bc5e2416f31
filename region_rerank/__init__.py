"""region-rerank: query-side region cropping for robust multimodal RAG re-ranking.

Everything public is importable from the top level; heavy modules (torch, transformers,
sentence-transformers) load only when the object that needs them is first used.

Example:
    >>> from region_rerank import CroppedReranker, Query, Candidate  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # data
    "Query": "region_rerank.types",
    "Candidate": "region_rerank.types",
    "Box": "region_rerank.types",
    "CropAction": "region_rerank.types",
    "CropDecision": "region_rerank.types",
    "ScoredCandidate": "region_rerank.types",
    "RerankResult": "region_rerank.types",
    # errors
    "RegionRerankError": "region_rerank.errors",
    "ConfigError": "region_rerank.errors",
    "ImageLoadError": "region_rerank.errors",
    "ImageTooLargeError": "region_rerank.errors",
    "URLFetchDisabledError": "region_rerank.errors",
    "InvalidBoxError": "region_rerank.errors",
    "CandidateError": "region_rerank.errors",
    "CropperError": "region_rerank.errors",
    "CropperTimeoutError": "region_rerank.errors",
    "ScorerError": "region_rerank.errors",
    "UnsafeWeightsError": "region_rerank.errors",
    "DatasetFormatError": "region_rerank.errors",
    # images and boxes
    "ImageLoadOptions": "region_rerank.images",
    "load_image": "region_rerank.images",
    "CoordFrame": "region_rerank.boxes",
    # croppers
    "QueryCropper": "region_rerank.croppers.base",
    "BaseCropper": "region_rerank.croppers.base",
    "FullImageCropper": "region_rerank.croppers.full",
    "VLMCropper": "region_rerank.croppers.vlm",
    "VLMCropperConfig": "region_rerank.croppers.vlm",
    "GroundingCropper": "region_rerank.croppers.grounding",
    "GroundingCropperConfig": "region_rerank.croppers.grounding",
    "phrases_from_question": "region_rerank.croppers.question_phrases",
    "TextMatchCropper": "region_rerank.croppers.text_match",
    "TextMatchCropperConfig": "region_rerank.croppers.text_match",
    # scorers
    "Scorer": "region_rerank.scorers.base",
    "PairScorer": "region_rerank.scorers.base",
    "CandidateEmbeddingConfig": "region_rerank.scorers.base",
    "ClipScorer": "region_rerank.scorers.clip",
    "SentenceTransformerScorer": "region_rerank.scorers.sentence_transformers",
    "CrossEncoderScorer": "region_rerank.scorers.cross_encoder",
    # reranker
    "CroppedReranker": "region_rerank.reranker",
    "RerankerConfig": "region_rerank.reranker",
}

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:
    from region_rerank.boxes import CoordFrame
    from region_rerank.croppers.base import BaseCropper, QueryCropper
    from region_rerank.croppers.full import FullImageCropper
    from region_rerank.croppers.grounding import GroundingCropper, GroundingCropperConfig
    from region_rerank.croppers.question_phrases import phrases_from_question
    from region_rerank.croppers.text_match import TextMatchCropper, TextMatchCropperConfig
    from region_rerank.croppers.vlm import VLMCropper, VLMCropperConfig
    from region_rerank.errors import (
        CandidateError,
        ConfigError,
        CropperError,
        CropperTimeoutError,
        ImageLoadError,
        ImageTooLargeError,
        InvalidBoxError,
        RegionRerankError,
        ScorerError,
        UnsafeWeightsError,
        URLFetchDisabledError,
    )
    from region_rerank.images import ImageLoadOptions, load_image
    from region_rerank.reranker import CroppedReranker, RerankerConfig
    from region_rerank.scorers.base import CandidateEmbeddingConfig, PairScorer, Scorer
    from region_rerank.scorers.clip import ClipScorer
    from region_rerank.scorers.cross_encoder import CrossEncoderScorer
    from region_rerank.scorers.sentence_transformers import SentenceTransformerScorer
    from region_rerank.types import (
        Box,
        Candidate,
        CropAction,
        CropDecision,
        Query,
        RerankResult,
        ScoredCandidate,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'region_rerank' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
