"""Bi-encoder scorer for sentence-transformers models.

Works with multimodal bi-encoders (``"clip-ViT-B-32"``, any model whose first module maps
images and texts into one space) and with text-only models. A text-only model embeds
candidates by their text alone (their images are ignored); asking it to embed an image,
or a candidate that only has images, raises a clear error.

sentence-transformers is an optional dependency (``pip install "region-rerank[sbert]"``)
and is imported on first use only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.errors import CandidateError, ScorerError
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.model_options import ModelOptions
from region_rerank.scorers._st_loading import LazySTModel, progress_enabled
from region_rerank.scorers.base import BaseEmbeddingScorer, CandidateEmbeddingConfig, l2_normalize
from region_rerank.types import Candidate

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["SentenceTransformerScorer", "progress_enabled"]

logger = logging.getLogger(__name__)

FEATURE = "SentenceTransformerScorer"


def _supports_images(model: Any) -> bool:
    supports = getattr(model, "supports", None)
    if callable(supports):  # sentence-transformers >= 5.4
        return bool(supports("image"))
    # Older versions: only the CLIPModel module understands images.
    return any(type(module).__name__ == "CLIPModel" for module in model)


class SentenceTransformerScorer(LazySTModel, BaseEmbeddingScorer):
    """A sentence-transformers bi-encoder as a :class:`~region_rerank.scorers.base.Scorer`.

    Args:
        model: Model name (``"clip-ViT-B-32"``, ``"sentence-transformers/clip-ViT-B-32"``) or
            a local folder saved with ``SentenceTransformer.save``.
        model_options: Device, dtype, pickled weights and remote code
            (:class:`~region_rerank.model_options.ModelOptions`). An injected ``model_obj``
            is moved / cast only to what is named.
        batch_size: Inputs per forward pass.
        candidate_config: How candidate images and text combine.
        model_obj: An already loaded ``SentenceTransformer``.
        model_kwargs: Extra keyword arguments for ``SentenceTransformer(...)`` (e.g.
            ``{"model_kwargs": {"dtype": "float16"}}``, ``{"cache_folder": ...}``).

    Raises:
        ImportError: sentence-transformers is not installed (names the extra to install).
        ConfigError: A setting is invalid or (on first use) the model cannot be loaded.
    """

    name = "sentence-transformers"
    _feature = FEATURE
    _st_class = "SentenceTransformer"
    _required_method = "encode"
    _what = "a sentence-transformers model"

    def __init__(
        self,
        model: str | os.PathLike[str] = "clip-ViT-B-32",
        *,
        model_options: ModelOptions | None = None,
        batch_size: int = 32,
        candidate_config: CandidateEmbeddingConfig | None = None,
        model_obj: Any = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        check_range("batch_size", batch_size, 1)
        self._init_model(model, model_obj, model_options, model_kwargs)
        self.name = f"sentence-transformers:{self.model_id}"
        self.batch_size = int(batch_size)
        self.candidate_config = candidate_config or CandidateEmbeddingConfig()

    def _on_loaded(self, model: Any) -> None:
        self._images = _supports_images(model)

    @property
    def supports_images(self) -> bool:
        """Whether the model embeds images (False for text-only models)."""
        self._load()
        return bool(self._images)

    def _encode(self, inputs: list[Any]) -> torch.Tensor:
        import torch

        model = self._load()
        with torch.inference_mode():
            emb = model.encode(
                inputs,
                batch_size=self.batch_size,
                show_progress_bar=progress_enabled(logger),
                convert_to_tensor=True,
            )
            if not isinstance(emb, torch.Tensor):
                raise ScorerError(f"{self.model_id!r}.encode returned {type(emb).__name__}")
            out = l2_normalize(emb.float())
        return out.clone()

    def _empty(self) -> torch.Tensor:
        import torch

        model = self._load()
        dim_fn = getattr(model, "get_embedding_dimension", None) or getattr(
            model, "get_sentence_embedding_dimension", None
        )
        dim = int((dim_fn() if callable(dim_fn) else 0) or 0)
        return torch.zeros(0, dim, dtype=torch.float32, device=self.device)

    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Embed RGB images; ``N x D`` float32, L2-normalised.

        Raises:
            ScorerError: The model is text-only.
        """
        self._load()
        if not self._images:
            raise ScorerError(
                f"{self.model_id!r} is a text-only sentence-transformers model: it cannot embed "
                "images (query views or image-only candidates). Use a multimodal model such as "
                "'clip-ViT-B-32' or ClipScorer"
            )
        if not images:
            return self._empty()
        return self._encode([load_image(img) for img in images])

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed texts (the model truncates to its ``max_seq_length``); ``N x D`` float32."""
        if not texts:
            return self._empty()
        return self._encode([str(t) for t in texts])

    def embed_candidates(
        self, candidates: Sequence[Candidate], image_options: ImageLoadOptions | None = None
    ) -> torch.Tensor:
        """Embed candidates; a text-only model uses their text and ignores their images.

        Raises:
            CandidateError: A candidate has nothing the model can embed (e.g. only images
                with a text-only model).
        """
        self._load()
        if self._images:
            return super().embed_candidates(candidates, image_options)
        cfg = self.candidate_config
        texts = []
        for cand in candidates:
            text = (cand.text or "").strip()
            if not text or cfg.text_weight == 0:
                raise CandidateError(
                    f"candidate {cand.id!r} has no text to embed, and {self.model_id!r} is a "
                    "text-only model that cannot embed its images"
                    if not text
                    else f"text_weight=0 leaves nothing to embed with the text-only model "
                    f"{self.model_id!r}"
                )
            texts.append(text[: cfg.max_text_chars])
        if any(cand.images for cand in candidates):
            logger.debug("%s is text-only: candidate images are ignored", self.model_id)
        return self.embed_texts(texts)
