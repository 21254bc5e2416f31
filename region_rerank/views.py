"""Turn decoded query images and crop boxes into query-view embeddings.

With a :class:`~region_rerank.scorers.base.TensorImageScorer` the image is decoded once,
copied to the scorer's device as ``uint8``, and every view (full image and/or crop) is cut
and resized there in one batch (:func:`region_rerank.images.crop_resize`). Other scorers
get PIL crops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from region_rerank.images import crop_pil, crop_resize, pil_to_tensor
from region_rerank.scorers.base import Scorer, TensorImageScorer
from region_rerank.types import Box

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["supports_tensor_path", "embed_views"]


def supports_tensor_path(scorer: object) -> bool:
    """True when ``scorer`` accepts preprocessed pixel values (the device crop path)."""
    return isinstance(scorer, TensorImageScorer)


def embed_views(
    scorer: Scorer,
    images: Sequence[Image.Image],
    views: Sequence[Sequence[Box | None]],
    *,
    tensor_crop: bool = True,
    batch_size: int = 32,
) -> list[torch.Tensor]:
    """Embed every view of every image.

    Args:
        scorer: The bi-encoder.
        images: Decoded RGB query images.
        views: For each image, the boxes to embed (``None`` = the full image).
        tensor_crop: Use the device crop path when the scorer supports it.
        batch_size: Views per forward pass.

    Returns:
        For each image, a ``len(views[i]) x D`` tensor of normalised embeddings.
    """
    import torch

    flat: list[torch.Tensor] = []
    if tensor_crop and isinstance(scorer, TensorImageScorer):
        spec = scorer.image_spec
        pixel_batches = [
            crop_resize(
                pil_to_tensor(img, scorer.device),
                list(boxes),
                spec.size,
                center_crop=spec.center_crop,
                mean=spec.mean,
                std=spec.std,
                interpolation=spec.interpolation,
            )
            for img, boxes in zip(images, views)
            if boxes
        ]
        if pixel_batches:
            pixels = torch.cat(pixel_batches, 0)
            for i in range(0, pixels.shape[0], batch_size):
                flat.append(scorer.embed_pixel_values(pixels[i : i + batch_size]))
    else:
        crops = [crop_pil(img, box) for img, boxes in zip(images, views) for box in boxes]
        for i in range(0, len(crops), batch_size):
            flat.append(scorer.embed_images(crops[i : i + batch_size]))
    embeddings = torch.cat(flat, 0) if flat else torch.zeros(0, 0)
    out: list[torch.Tensor] = []
    start = 0
    for boxes in views:
        out.append(embeddings[start : start + len(boxes)])
        start += len(boxes)
    return out
