"""Score the query views (full image and/or crop) of decoded query images.

:func:`embed_views` embeds them for a bi-encoder. With a
:class:`~region_rerank.scorers.base.TensorImageScorer` the image is decoded once, copied
to the scorer's device as ``uint8``, and every view is cut and resized there in one batch
(:func:`region_rerank.images.crop_resize`; in ``uint8`` on the CPU when the scorer's
processor resizes ``uint8`` images, ``ImageSpec.resize_uint8``). Other scorers get PIL
crops.
:func:`pair_view_scores` scores them against a pool with a cross-encoder.
:func:`score_by_embeddings` and :func:`score_by_pairs` score whole batches of pools, as
:class:`~region_rerank.reranker.CroppedReranker` does.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from region_rerank.cache import pool_embeddings
from region_rerank.errors import ScorerError
from region_rerank.images import ImageLoadOptions, crop_pil, crop_resize, pil_to_tensor
from region_rerank.oom import map_batches
from region_rerank.salvage import score_salvaging
from region_rerank.scorers.base import PairScorer, Scorer, TensorImageScorer
from region_rerank.types import Box, Candidate, Query

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from region_rerank.cache import EmbeddingCache
    from region_rerank.reranker import RerankerConfig

__all__ = [
    "supports_tensor_path",
    "embed_views",
    "pair_view_scores",
    "score_by_embeddings",
    "score_by_pairs",
]

#: Per query: the scores of the chosen view, and of the full image when both were scored.
ViewScores = list[tuple[list[float], list[float] | None]]

logger = logging.getLogger(__name__)


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
        batch_size: Views per forward pass (halved on out-of-memory errors).

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
                resize_uint8=spec.resize_uint8,
            )
            for img, boxes in zip(images, views)
            if boxes
        ]
        if pixel_batches:
            pixels = torch.cat(pixel_batches, 0)
            flat = map_batches(scorer.embed_pixel_values, pixels, batch_size, what="view batch")
    else:
        crops = [crop_pil(img, box) for img, boxes in zip(images, views) for box in boxes]
        flat = map_batches(scorer.embed_images, crops, batch_size, what="view batch")
    embeddings = torch.cat(flat, 0) if flat else torch.zeros(0, 0)
    out: list[torch.Tensor] = []
    start = 0
    for boxes in views:
        out.append(embeddings[start : start + len(boxes)])
        start += len(boxes)
    return out


def pair_view_scores(
    scorer: PairScorer,
    query: Query,
    image: Image.Image,
    boxes: Sequence[Box | None],
    pool: Sequence[Candidate],
    image_options: ImageLoadOptions | None = None,
    *,
    batch_size: int | None = None,
    salvage: bool = False,
) -> list[list[float]]:
    """Cross-encoder scores of ``pool`` for each view of one decoded query image.

    A candidate with neither text nor images cannot be scored (a cross-encoder does not use
    precomputed embeddings): it gets ``-inf`` and a warning, and never reaches the model.
    Non-finite scores become ``-inf``. The pool is sent in one call, or in calls of
    ``batch_size`` candidates; either is halved on out-of-memory errors. With ``salvage``,
    an image decoding error scores each candidate without its undecodable images
    (:func:`region_rerank.salvage.score_salvaging`).

    Returns:
        One row of ``len(pool)`` scores per box (``None`` = the full image).

    Raises:
        ScorerError: The scorer returned the wrong number of scores.
    """
    scorable = [j for j, c in enumerate(pool) if (c.text or "").strip() or c.images]
    name = getattr(scorer, "name", type(scorer).__name__)
    for j in sorted(set(range(len(pool))) - set(scorable)):
        logger.warning(
            "candidate %r has no text or image: it cannot be scored by %s; ranked last",
            pool[j].id,
            name,
        )
    subset = [pool[j] for j in scorable]
    rows = []
    for box in boxes:
        view = crop_pil(image, box)

        def score_chunk(chunk: list[Candidate], view: Image.Image = view) -> list[float]:
            def score(items: list[Candidate]) -> list[float]:
                got = list(scorer.score_pairs(query, view, items, image_options))
                if len(got) != len(items):
                    raise ScorerError(
                        f"{name} returned {len(got)} scores for {len(items)} candidates"
                    )
                return got

            return score_salvaging(score, chunk, image_options) if salvage else score(chunk)

        row = [-math.inf] * len(pool)
        parts = map_batches(score_chunk, subset, batch_size or len(subset), what="pair batch")
        for j, value in zip(scorable, (v for part in parts for v in part)):
            row[j] = float(value) if math.isfinite(float(value)) else -math.inf
        rows.append(row)
    return rows


def score_by_embeddings(
    scorer: Scorer,
    images: list[Image.Image],
    views: list[list[Box | None]],
    pools: list[list[Candidate]],
    cache: EmbeddingCache,
    config: RerankerConfig,
    timings: dict[str, float],
) -> ViewScores:
    """Score each pool against its query's views with a bi-encoder (candidate embeddings
    through ``cache``); ``views[i]`` is ``[box]`` or ``[None, box]`` (full image first)."""
    import torch

    t = time.perf_counter()
    view_emb = embed_views(
        scorer, images, views, tensor_crop=config.tensor_crop, batch_size=config.batch_size
    )
    timings["embed_query"] = time.perf_counter() - t
    t = time.perf_counter()
    cand_emb, valid = pool_embeddings(
        scorer,
        pools,
        cache,
        dim=int(view_emb[0].shape[1]),
        device=view_emb[0].device,
        batch_size=config.batch_size,
        image_options=config.image_options,
        salvage=config.on_error == "fallback",
    )
    timings["embed_candidates"] = time.perf_counter() - t
    t = time.perf_counter()
    out: ViewScores = []
    for vb, ce, ok, boxes in zip(view_emb, cand_emb, valid, views):
        if ce.shape[0] == 0:
            out.append(([], None))
            continue
        sims = scorer.score(vb, ce).float().cpu()
        sims[:, ~ok] = -math.inf
        sims = torch.where(torch.isnan(sims), -math.inf, sims)
        rows = sims.tolist()
        out.append((rows[-1], rows[0] if len(boxes) == 2 else None))
    timings["score"] = time.perf_counter() - t
    return out


def score_by_pairs(
    scorer: PairScorer,
    queries: list[Query],
    images: list[Image.Image],
    views: list[list[Box | None]],
    pools: list[list[Candidate]],
    config: RerankerConfig,
    timings: dict[str, float],
) -> ViewScores:
    """Score each pool against its query's views with a cross-encoder."""
    t = time.perf_counter()
    out: ViewScores = []
    salvage = config.on_error == "fallback"
    for query, img, boxes, pool in zip(queries, images, views, pools):
        rows = pair_view_scores(
            scorer, query, img, boxes, pool, config.image_options, salvage=salvage
        )
        out.append((rows[-1], rows[0] if len(rows) == 2 else None))
    timings["score"] = time.perf_counter() - t
    return out
