"""Scorer protocols and the shared candidate-embedding logic.

Two kinds of scorer exist:

* :class:`Scorer` (bi-encoder): embeds images and texts into one space; the reranker
  embeds the query view and each candidate once, caches candidate embeddings, and scores
  by cosine similarity.
* :class:`PairScorer` (cross-encoder): scores (query view + question, candidate) pairs
  jointly; nothing is cached.

A bi-encoder may also expose :class:`TensorImageScorer` so the reranker can crop and
resize on the device and feed pixel values directly, skipping a PIL round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from region_rerank._validate import check_choice, check_range
from region_rerank.errors import CandidateError
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.types import Candidate, Query

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "Scorer",
    "TensorImageScorer",
    "PairScorer",
    "ImageSpec",
    "CandidateEmbeddingConfig",
    "BaseEmbeddingScorer",
    "l2_normalize",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class Scorer(Protocol):
    """A bi-encoder: embeds images and texts into one space and scores by similarity.

    All returned embeddings are float32, L2-normalised, ``N x D`` tensors.
    """

    name: str

    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Embed RGB PIL images."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed texts."""
        ...

    def embed_candidates(
        self, candidates: Sequence[Candidate], image_options: ImageLoadOptions | None = None
    ) -> torch.Tensor:
        """Embed candidates (image and text combined); ``K x D``."""
        ...

    def score(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Similarity matrix ``Q x K`` between query and candidate embeddings."""
        ...


@dataclass(frozen=True)
class ImageSpec:
    """How a scorer's image processor turns an image into pixel values.

    Attributes:
        size: ``(height, width)`` of the model input.
        mean, std: Per-channel normalisation.
        center_crop: Processor resizes the shortest side then centre-crops (CLIP); otherwise
            it squashes the image to ``size`` (SigLIP).
        interpolation: ``"bicubic"`` or ``"bilinear"``.
        resize_uint8: The processor resizes ``uint8`` images (rounding to 1/255), so the
            tensor path may too (faster on CPU; see
            :func:`region_rerank.images.crop_resize`); ``False`` resizes in float32.
    """

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    center_crop: bool = False
    interpolation: str = "bicubic"
    resize_uint8: bool = False


@runtime_checkable
class TensorImageScorer(Scorer, Protocol):
    """A bi-encoder that accepts preprocessed pixel values (the fast crop path)."""

    @property
    def image_spec(self) -> ImageSpec:
        """Input geometry and normalisation of the image tower."""
        ...

    @property
    def device(self) -> Any:
        """The torch device the model runs on."""
        ...

    def embed_pixel_values(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Embed an ``N x 3 x H x W`` batch already resized and normalised."""
        ...


@runtime_checkable
class PairScorer(Protocol):
    """A cross-encoder: scores each candidate jointly with the query view and question."""

    name: str

    def score_pairs(
        self,
        query: Query,
        view: Image.Image,
        candidates: Sequence[Candidate],
        image_options: ImageLoadOptions | None = None,
    ) -> list[float]:
        """One relevance score per candidate for the query ``view`` (crop or full image)."""
        ...


@dataclass(frozen=True)
class CandidateEmbeddingConfig:
    """How a candidate's image(s) and text combine into one embedding.

    ``embedding = normalise(image_weight * img + text_weight * text)`` with
    ``img = normalise(mean(image embeddings))``: the reference system's recipe (one image,
    both weights 1). A candidate with only text or only images uses what it has. Text is
    cut at ``max_text_chars`` characters.
    """

    image_weight: float = 1.0
    text_weight: float = 1.0
    max_text_chars: int = 500
    image_reduce: str = "mean"

    def __post_init__(self) -> None:
        check_range("image_weight", self.image_weight, 0.0)
        check_range("text_weight", self.text_weight, 0.0)
        if self.image_weight == 0 and self.text_weight == 0:
            check_range("image_weight + text_weight", 0.0, 0.0, low_inclusive=False)
        check_range("max_text_chars", self.max_text_chars, 1)
        check_choice("image_reduce", self.image_reduce, ("mean", "first"))


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Row-wise L2 normalisation (rows of zeros stay zero)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


class BaseEmbeddingScorer:
    """Shared behaviour of bi-encoders: candidate embedding and cosine scoring.

    Subclasses implement :meth:`embed_images` and :meth:`embed_texts`.
    """

    name: str = "scorer"
    candidate_config: CandidateEmbeddingConfig = CandidateEmbeddingConfig()
    batch_size: int = 32

    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        raise NotImplementedError

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def score(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Cosine similarity (embeddings are normalised): ``queries @ candidates.T``."""
        q = queries.to(candidates.device, candidates.dtype)
        return q @ candidates.T

    def embed_candidates(
        self, candidates: Sequence[Candidate], image_options: ImageLoadOptions | None = None
    ) -> torch.Tensor:
        """Embed candidates: ``normalise(w_img * normalise(mean(images)) + w_txt * text)``.

        Raises:
            CandidateError: A candidate has neither usable text nor images.
            ImageLoadError: A candidate image cannot be decoded.
        """
        import torch

        if not candidates:
            return self.embed_texts([])
        cfg = self.candidate_config
        texts: list[str] = []
        text_rows: list[int] = []
        images: list[Image.Image] = []
        image_rows: list[int] = []
        for row, cand in enumerate(candidates):
            text = (cand.text or "").strip()
            imgs = list(cand.images) if cfg.image_weight > 0 else []
            if cfg.image_reduce == "first":
                imgs = imgs[:1]
            if cfg.text_weight > 0 and text:
                texts.append(text[: cfg.max_text_chars])
                text_rows.append(row)
            for img in imgs:
                images.append(load_image(img, image_options))
                image_rows.append(row)
            if row not in text_rows[-1:] and row not in image_rows[-1:]:
                raise CandidateError(
                    f"candidate {cand.id!r} has no text or image to embed with "
                    f"image_weight={cfg.image_weight}, text_weight={cfg.text_weight}"
                )
        parts: list[torch.Tensor] = []
        if images:
            parts.append(self._batched(self.embed_images, images))
        if texts:
            parts.append(self._batched(self.embed_texts, texts))
        dim = parts[0].shape[1]
        device = parts[0].device
        out = torch.zeros(len(candidates), dim, dtype=torch.float32, device=device)
        if images:
            img_emb = parts[0].float()
            counts = torch.zeros(len(candidates), device=device)
            idx = torch.tensor(image_rows, device=device)
            img_sum = torch.zeros_like(out).index_add_(0, idx, img_emb)
            counts.index_add_(0, idx, torch.ones(len(image_rows), device=device))
            has = counts > 0
            img_mean = l2_normalize(img_sum[has] / counts[has, None])
            out[has] += cfg.image_weight * img_mean
        if texts:
            txt_emb = parts[-1].float().to(device)
            out[torch.tensor(text_rows, device=device)] += cfg.text_weight * txt_emb
        return l2_normalize(out)

    def _batched(self, fn: Any, items: Sequence[Any]) -> torch.Tensor:
        import torch

        chunks = [fn(items[i : i + self.batch_size]) for i in range(0, len(items), self.batch_size)]
        return torch.cat(chunks, 0)
