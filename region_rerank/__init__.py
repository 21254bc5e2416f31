"""region-rerank: query-side region cropping for robust multimodal RAG re-ranking.

Everything public is importable from the top level; heavy modules (torch, transformers,
sentence-transformers) load only when the object that needs them is first used.

Example:
    >>> from region_rerank import CroppedReranker, Query, Candidate  # doctest: +SKIP

Modules:

* Decisions and scoring: :mod:`~region_rerank.reranker` (``CroppedReranker``),
  :mod:`~region_rerank.views` (scoring the query views), :mod:`~region_rerank.fusion`
  (score fusion and ranking), :mod:`~region_rerank.cache` (the candidate-embedding cache),
  :mod:`~region_rerank.salvage` (per-candidate fallback), :mod:`~region_rerank.oom`
  (batch halving on out-of-memory), :mod:`~region_rerank.budget` (time and length limits).
* Components: :mod:`~region_rerank.croppers`, :mod:`~region_rerank.scorers`,
  :mod:`~region_rerank.proposals` (the proposal grid), :mod:`~region_rerank.index` (the
  candidate index, the first-stage search; :mod:`~region_rerank.index_shards` builds it
  across processes, :mod:`~region_rerank.faiss_search` searches it with FAISS, exact or
  approximate), :mod:`~region_rerank.retrieval` (region-aware
  retrieval: the decision drives the search and the re-rank), the spec registry
  (:mod:`~region_rerank.spec_registry`, :mod:`~region_rerank.specs`) and
  :mod:`~region_rerank.factory` (building components from spec strings).
* Data and inputs: :mod:`~region_rerank.types`, :mod:`~region_rerank.images`,
  :mod:`~region_rerank.boxes`, :mod:`~region_rerank.errors`, :mod:`~region_rerank.device`,
  :mod:`~region_rerank.model_options` (how model-backed components load),
  :mod:`~region_rerank.checksums`, :mod:`~region_rerank.progress`,
  :mod:`~region_rerank.testing` (fakes for tests), :mod:`~region_rerank.adapter_support`
  (what the LlamaIndex and LangChain adapters share).
* Around the core: :mod:`~region_rerank.eval` (benchmarks and metrics),
  :mod:`~region_rerank.train` (r-GRPO), :mod:`~region_rerank.demo` (the offline demo world),
  :mod:`~region_rerank.bench` (speed and quality benchmarks), :mod:`~region_rerank.cli`,
  :mod:`~region_rerank.convert_cli`, :mod:`~region_rerank.index_cli` and
  :mod:`~region_rerank.world_cli` (the ``region-rerank`` command).
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
    "ModelLoadError": "region_rerank.errors",
    "InputTypeError": "region_rerank.errors",
    "DatasetFormatError": "region_rerank.errors",
    # images and boxes
    "ImageLoadOptions": "region_rerank.images",
    "ModelOptions": "region_rerank.model_options",
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
    "CenterCropper": "region_rerank.croppers.baselines",
    "RandomCropper": "region_rerank.croppers.baselines",
    "ProposalPolicyCropper": "region_rerank.croppers.proposal",
    "ProposalPolicyConfig": "region_rerank.croppers.proposal",
    # scorers
    "Scorer": "region_rerank.scorers.base",
    "PairScorer": "region_rerank.scorers.base",
    "CandidateEmbeddingConfig": "region_rerank.scorers.base",
    "ClipScorer": "region_rerank.scorers.clip",
    "SentenceTransformerScorer": "region_rerank.scorers.sentence_transformers",
    "CrossEncoderScorer": "region_rerank.scorers.cross_encoder",
    "DemoScorer": "region_rerank.demo.scorer",
    # building from specs, caching
    "build_cropper": "region_rerank.factory",
    "build_scorer": "region_rerank.factory",
    "EmbeddingCache": "region_rerank.cache",
    # reranker
    "CroppedReranker": "region_rerank.reranker",
    "RerankerConfig": "region_rerank.reranker",
    # first-stage search
    "CandidateIndex": "region_rerank.index",
    "RegionRetriever": "region_rerank.retrieval",
}

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:
    from region_rerank.boxes import CoordFrame
    from region_rerank.cache import EmbeddingCache
    from region_rerank.croppers.base import BaseCropper, QueryCropper
    from region_rerank.croppers.baselines import CenterCropper, RandomCropper
    from region_rerank.croppers.full import FullImageCropper
    from region_rerank.croppers.grounding import GroundingCropper, GroundingCropperConfig
    from region_rerank.croppers.proposal import ProposalPolicyConfig, ProposalPolicyCropper
    from region_rerank.croppers.question_phrases import phrases_from_question
    from region_rerank.croppers.text_match import TextMatchCropper, TextMatchCropperConfig
    from region_rerank.croppers.vlm import VLMCropper, VLMCropperConfig
    from region_rerank.demo.scorer import DemoScorer
    from region_rerank.errors import (
        CandidateError,
        ConfigError,
        CropperError,
        CropperTimeoutError,
        ImageLoadError,
        ImageTooLargeError,
        InputTypeError,
        InvalidBoxError,
        ModelLoadError,
        RegionRerankError,
        ScorerError,
        UnsafeWeightsError,
        URLFetchDisabledError,
    )
    from region_rerank.factory import build_cropper, build_scorer
    from region_rerank.images import ImageLoadOptions, load_image
    from region_rerank.index import CandidateIndex
    from region_rerank.model_options import ModelOptions
    from region_rerank.reranker import CroppedReranker, RerankerConfig
    from region_rerank.retrieval import RegionRetriever
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
