"""Cross-encoder scorer for multimodal sentence-transformers ``CrossEncoder`` models.

Each candidate is scored jointly with the query view: the query side is the question plus
the view (the crop, or the full image), the candidate side is the candidate's text and/or
images. sentence-transformers (>= 5.4) turns such pairs into a chat conversation with a
``query`` and a ``document`` turn, which multimodal rerankers (Qwen-VL style generative
rerankers, ``jina-reranker-m0``...) score. Input format, as passed to
``CrossEncoder.predict``::

    ({"text": question, "image": view}, {"text": candidate_text, "image": [img, ...]})

sentence-transformers is an optional dependency (``pip install "region-rerank[sbert]"``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.errors import CandidateError, ConfigError, ScorerError
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.model_options import ModelOptions
from region_rerank.scorers._st_loading import LazySTModel, progress_enabled
from region_rerank.types import Candidate, Query

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["CrossEncoderScorer"]

logger = logging.getLogger(__name__)

FEATURE = "CrossEncoderScorer"


class CrossEncoderScorer(LazySTModel):
    """A multimodal cross-encoder as a :class:`~region_rerank.scorers.base.PairScorer`.

    Args:
        model: Model name or a local folder saved with ``CrossEncoder.save``.
        model_options: Device, dtype, pickled weights and remote code
            (:class:`~region_rerank.model_options.ModelOptions`). An injected ``model_obj``
            is moved / cast only to what is named.
        batch_size: Pairs per forward pass.
        max_text_chars: Candidate text is cut at this many characters.
        max_candidate_images: At most this many images per candidate are shown to the model
            (0 scores candidates by text only).
        include_question: Put the question beside the view on the query side. When False
            (or the question is blank) the query side is the view alone.
        apply_activation: Apply the model's activation (sigmoid for one-label models) to the
            logits. Off gives raw logits, which do not saturate.
        model_obj: An already loaded ``CrossEncoder``.
        model_kwargs: Extra keyword arguments for ``CrossEncoder(...)``.

    Raises:
        ImportError: sentence-transformers is not installed (names the extra to install).
        ConfigError: A setting is invalid or (on first use) the model cannot be loaded or
            does not accept images.
    """

    name = "cross-encoder"
    _feature = FEATURE
    _st_class = "CrossEncoder"
    _required_method = "predict"
    _what = "a cross-encoder model"

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        model_options: ModelOptions | None = None,
        batch_size: int = 16,
        max_text_chars: int = 500,
        max_candidate_images: int = 1,
        include_question: bool = True,
        apply_activation: bool = True,
        model_obj: Any = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        check_range("batch_size", batch_size, 1)
        check_range("max_text_chars", max_text_chars, 1)
        check_range("max_candidate_images", max_candidate_images, 0)
        self._init_model(model, model_obj, model_options, model_kwargs)
        self.name = f"cross-encoder:{self.model_id}"
        self.batch_size = int(batch_size)
        self.max_text_chars = int(max_text_chars)
        self.max_candidate_images = int(max_candidate_images)
        self.include_question = bool(include_question)
        self.apply_activation = bool(apply_activation)

    def _on_loaded(self, model: Any) -> None:
        supports = getattr(model, "supports", None)
        if not (callable(supports) and supports("image")):
            raise ConfigError(
                f"{FEATURE} needs a multimodal cross-encoder that accepts images (the "
                f"query side is the cropped view); {self.model_id!r} is text-only. Use "
                "a bi-encoder scorer (ClipScorer, SentenceTransformerScorer) or a "
                "multimodal reranker"
            )

    def query_input(self, query: Query, view: Image.Image) -> Any:
        """The query side of every pair: ``{"text": question, "image": view}`` (or the view)."""
        image = load_image(view)
        question = query.question.strip()
        if self.include_question and question:
            return {"text": question, "image": image}
        return image

    def candidate_input(
        self, candidate: Candidate, image_options: ImageLoadOptions | None = None
    ) -> Any:
        """The candidate side of a pair: its text and/or up to ``max_candidate_images`` images.

        Raises:
            CandidateError: The candidate has neither text nor (usable) images.
        """
        text = (candidate.text or "").strip()[: self.max_text_chars]
        images = [
            load_image(img, image_options) for img in candidate.images[: self.max_candidate_images]
        ]
        if not text and not images:
            raise CandidateError(
                f"candidate {candidate.id!r} has no text or image to score "
                f"(max_candidate_images={self.max_candidate_images})"
            )
        if not images:
            return text
        image: Any = images[0] if len(images) == 1 else images
        return {"text": text, "image": image} if text else {"image": image}

    def score_pairs(
        self,
        query: Query,
        view: Image.Image,
        candidates: Sequence[Candidate],
        image_options: ImageLoadOptions | None = None,
    ) -> list[float]:
        """One relevance score per candidate, in input order (higher is more relevant).

        Args:
            query: The query (its question is used; its image is replaced by ``view``).
            view: The query view: the crop, or the full image.
            candidates: Candidates to score.
            image_options: Decoding policy for candidate images.

        Raises:
            CandidateError: A candidate has nothing to score.
            ScorerError: The model returned an unexpected number of scores.
        """
        if not candidates:
            return []
        import torch

        model = self._load()
        left = self.query_input(query, view)
        pairs = [(left, self.candidate_input(c, image_options)) for c in candidates]
        kwargs: dict[str, Any] = {}
        if not self.apply_activation:
            kwargs["activation_fn"] = torch.nn.Identity()
        scores = model.predict(
            pairs,
            batch_size=self.batch_size,
            show_progress_bar=progress_enabled(logger),
            convert_to_tensor=True,
            **kwargs,
        )
        scores = scores.detach().float().cpu()
        if scores.ndim == 2:  # several labels: the last one is the "relevant" class
            scores = scores[:, -1]
        if scores.shape != (len(candidates),):
            raise ScorerError(
                f"{self.model_id!r} returned scores of shape {tuple(scores.shape)} for "
                f"{len(candidates)} candidates"
            )
        return [float(s) for s in scores.tolist()]
