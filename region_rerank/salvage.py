"""Per-candidate fallback: one bad candidate must not degrade the whole query.

When a scorer fails on a batch with :class:`~region_rerank.errors.ImageLoadError`, every
candidate of the batch is checked: undecodable images are removed, and the candidate is
scored with what is left (its other images and its text). A candidate with nothing left is
ranked last with score ``-inf``.

When a batch fails with any other error (say a tokenizer refusing a lone surrogate in one
candidate's text), the candidates are scored one at a time and only those that fail alone
are ranked last with score ``-inf``. If every candidate fails alone, the failure is not the
candidates' and the original error propagates (the query then degrades as a whole).
Running out of memory is left to :func:`region_rerank.oom.map_batches`, which splits the
batch instead.

Nothing is dropped, and a warning names each candidate. Only the fallback mode of
:class:`~region_rerank.CroppedReranker` does this; in raise mode the error propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from region_rerank.errors import ImageLoadError
from region_rerank.images import ImageLoadOptions, load_image
from region_rerank.oom import is_out_of_memory
from region_rerank.types import Candidate

if TYPE_CHECKING:
    import torch

__all__ = ["without_bad_images", "embed_salvaging", "score_salvaging"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def _one_by_one(
    run: Callable[[list[Candidate]], list[_T]], chunk: Sequence[Candidate], exc: Exception
) -> list[_T | None]:
    """``run`` on each candidate alone after the batch failed with ``exc``; ``None`` for a
    candidate that fails alone. Re-raises ``exc`` when every candidate fails alone (or the
    batch had one candidate): then the failure is not a candidate's."""
    if is_out_of_memory(exc) or len(chunk) < 2:
        raise exc
    logger.warning("a candidate batch failed (%s: %s); scoring one by one", type(exc).__name__, exc)
    out: list[_T | None] = []
    for cand in chunk:
        try:
            out.append(run([cand])[0])
        except Exception as one:
            if is_out_of_memory(one):
                raise
            logger.warning(
                "candidate %r cannot be scored (%s: %s); ranked last",
                cand.id,
                type(one).__name__,
                one,
            )
            out.append(None)
    if all(o is None for o in out):
        raise exc
    return out


def without_bad_images(cand: Candidate, options: ImageLoadOptions | None) -> Candidate | None:
    """``cand`` without its undecodable images (the same object when all decode), or
    ``None`` when neither text nor a decodable image is left."""
    good: list[Any] = []
    for image in cand.images:
        try:
            load_image(image, options)
        except ImageLoadError as exc:
            logger.warning("candidate %r: ignoring an undecodable image (%s)", cand.id, exc)
        else:
            good.append(image)
    if len(good) == len(cand.images):
        return cand
    if not good and not (cand.text or "").strip():
        logger.warning("candidate %r has no decodable image and no text; ranked last", cand.id)
        return None
    return replace(cand, images=tuple(good), embedding=None)


def embed_salvaging(
    embed: Callable[[list[Candidate]], torch.Tensor],
    chunk: Sequence[Candidate],
    options: ImageLoadOptions | None,
) -> list[tuple[torch.Tensor | None, bool]]:
    """Embed ``chunk``; on an image decoding error, embed what each candidate has left.

    Returns:
        Per candidate ``(embedding or None, exact)``: ``exact`` is False for a candidate
        embedded without some of its images (it must not be cached under its content key),
        the embedding is ``None`` for a candidate with nothing left.
    """
    try:
        return [(row, True) for row in embed(list(chunk))]
    except ImageLoadError as exc:
        logger.warning("candidate image failed to decode (%s); checking each candidate", exc)
    except Exception as exc:
        rows = _one_by_one(lambda c: embed_salvaging(embed, c, options), chunk, exc)
        return [(None, False) if r is None else r for r in rows]
    fixed = [without_bad_images(c, options) for c in chunk]
    usable = [c for c in fixed if c is not None]
    rows = iter(embed(usable)) if usable else iter(())
    return [
        (None, False) if f is None else (next(rows), f is orig) for f, orig in zip(fixed, chunk)
    ]


def score_salvaging(
    score: Callable[[list[Candidate]], list[float]],
    chunk: Sequence[Candidate],
    options: ImageLoadOptions | None,
) -> list[float]:
    """Cross-encoder scores of ``chunk``; on an image decoding error, score what each
    candidate has left (``-inf`` for a candidate with nothing left)."""
    try:
        return score(list(chunk))
    except ImageLoadError as exc:
        logger.warning("candidate image failed to decode (%s); checking each candidate", exc)
    except Exception as exc:
        got = _one_by_one(lambda c: score_salvaging(score, c, options), chunk, exc)
        return [float("-inf") if g is None else g for g in got]
    fixed = [without_bad_images(c, options) for c in chunk]
    scores = iter(score([c for c in fixed if c is not None]))
    return [float("-inf") if f is None else next(scores) for f in fixed]
