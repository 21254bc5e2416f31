"""A training-free cropper: pick the proposal region most similar to the question.

Any bi-encoder scorer (CLIP, SigLIP, the demo scorer) embeds the question text and a grid
of proposal crops; the best proposal is kept when it beats the full image by ``margin``
in similarity to the question, otherwise FULL. Like a zero-shot "CLIP-guided zoom".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from region_rerank._validate import check_range
from region_rerank.croppers.base import BaseCropper
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.proposals import grid_proposals
from region_rerank.scorers.base import Scorer
from region_rerank.types import CropDecision, Query
from region_rerank.views import embed_views

__all__ = ["TextMatchCropperConfig", "TextMatchCropper"]


@dataclass(frozen=True)
class TextMatchCropperConfig:
    """Settings of :class:`TextMatchCropper`.

    Attributes:
        scales: Proposal sides as fractions of the shorter image side.
        overlap: Overlap of neighbouring proposals.
        margin: Crop only when the best proposal's similarity to the question exceeds the
            full image's by more than this.
        batch_size: Proposal crops per forward pass.
    """

    scales: tuple[float, ...] = (0.3, 0.45, 0.6)
    overlap: float = 0.5
    margin: float = 0.0
    batch_size: int = 64

    def __post_init__(self) -> None:
        for s in self.scales:
            check_range("scales", s, 0.0, 1.0, low_inclusive=False)
        check_range("overlap", self.overlap, 0.0, 0.9)
        check_range("margin", self.margin, -2.0, 2.0)
        check_range("batch_size", self.batch_size, 1)


class TextMatchCropper(BaseCropper):
    """Crop the grid proposal whose embedding best matches the question's.

    Args:
        scorer: The bi-encoder that embeds question and crops (usually the reranker's own).
        config: :class:`TextMatchCropperConfig`.
        image_options: Pixel budget / URL policy for decoding query images.
    """

    name = "text_match"

    def __init__(
        self,
        scorer: Scorer,
        config: TextMatchCropperConfig | None = None,
        image_options: ImageLoadOptions | None = None,
    ) -> None:
        self.scorer = scorer
        self.config = config or TextMatchCropperConfig()
        self.image_options = image_options

    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        if not queries:
            return []
        cfg = self.config
        images = [load_image(q.image, self.image_options) for q in queries]
        proposals = [grid_proposals(img.size, cfg.scales, cfg.overlap) for img in images]
        views = [[None, *boxes] for boxes in proposals]
        view_emb = embed_views(self.scorer, images, views, batch_size=cfg.batch_size)
        questions = self.scorer.embed_texts([q.question for q in queries])
        out = []
        for img, boxes, emb, question in zip(images, proposals, view_emb, questions):
            sims = self.scorer.score(question[None], emb)[0].float().cpu()
            best = int(sims[1:].argmax()) + 1
            gain = float(sims[best] - sims[0])
            summary = f"best proposal sim {float(sims[best]):.4f}, full {float(sims[0]):.4f}"
            if gain > cfg.margin:
                out.append(
                    CropDecision.region(
                        boxes[best - 1],
                        image_size=img.size,
                        confidence=gain,
                        source=self.name,
                        raw_output=summary,
                    )
                )
            else:
                out.append(
                    CropDecision.full(
                        image_size=img.size,
                        source=self.name,
                        raw_output=summary,
                        reason=f"no proposal beats the full image by more than {cfg.margin}",
                    )
                )
        return out
