"""The TRL training set of a VLM crop policy: one conversational prompt per query, built
with the same :class:`~region_rerank.croppers.vlm_prompt.VLMPrompter` the cropper uses at
inference, plus the reward columns of
:func:`region_rerank.train.data.build_reward_examples`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from region_rerank.boxes import CoordFrame
from region_rerank.errors import ConfigError
from region_rerank.images import load_image

if TYPE_CHECKING:
    from region_rerank.croppers.vlm_prompt import VLMPrompter
    from region_rerank.train.data import RewardExample

__all__ = ["vlm_prompt_rows", "build_vlm_dataset"]

logger = logging.getLogger(__name__)


def vlm_prompt_rows(
    examples: Sequence[RewardExample], prompter: VLMPrompter, *, max_aspect_ratio: float = 200.0
) -> list[dict[str, Any]]:
    """One TRL row per example whose image the processor accepts.

    Each row holds ``prompt`` (a one-message conversation; TRL inserts the image before the
    text, as :class:`~region_rerank.croppers.vlm.VLMCropper` does), ``image`` (RGB PIL),
    ``query_id``, ``candidate_embeddings`` (``K x D`` nested lists), ``is_positive``,
    ``full_scores``, ``index_positive`` (examples built with an index) and, for
    :attr:`CoordFrame.QWEN25_RESIZED`, ``resized_size``.
    Images too small or too elongated for the processor are left out (logged).
    """
    rows: list[dict[str, Any]] = []
    skipped = 0
    for ex in examples:
        image = load_image(ex.image)
        reason = prompter.skip_reason(image.size, max_aspect_ratio)
        if reason is not None:
            skipped += 1
            logger.info("query %r left out of VLM training: %s", ex.query_id, reason)
            continue
        row: dict[str, Any] = {
            "prompt": [{"role": "user", "content": prompter.build_prompt(ex.question, image.size)}],
            "image": image,
            "query_id": ex.query_id,
            "candidate_embeddings": ex.candidate_embeddings.float().tolist(),
            "is_positive": list(ex.is_positive),
            "full_scores": list(ex.full_scores),
        }
        if ex.index_positive:
            row["index_positive"] = list(ex.index_positive)
        if prompter.frame is CoordFrame.QWEN25_RESIZED:
            resized = prompter.coordinate_frame_for(image.size)[1]
            row["resized_size"] = list(resized) if resized else None
        rows.append(row)
    if skipped:
        logger.warning(
            "%d of %d queries left out: images the processor refuses", skipped, len(examples)
        )
    return rows


def build_vlm_dataset(
    examples: Sequence[RewardExample], prompter: VLMPrompter, *, max_aspect_ratio: float = 200.0
) -> Any:
    """:func:`vlm_prompt_rows` as a ``datasets.Dataset``.

    Raises:
        ConfigError: No example is usable.
    """
    import datasets

    rows = vlm_prompt_rows(examples, prompter, max_aspect_ratio=max_aspect_ratio)
    if not rows:
        raise ConfigError("no training query is usable by this processor (all images refused)")
    return datasets.Dataset.from_list(rows)
