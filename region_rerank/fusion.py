"""Score fusion and ranking.

Fusion modes (:attr:`RerankerConfig.fusion`):

* ``"crop"`` -- the paper: similarity to the chosen view (the crop on REGION, the full
  image on FULL).
* ``"max"`` -- ``max(full-image similarity, crop similarity)``: a crop can only help.
* ``"blend"`` -- ``(1 - w) * crop similarity + w * full-image similarity`` (``w`` =
  :attr:`~region_rerank.reranker.RerankerConfig.full_weight`, 0.5: their mean): the
  crop's evidence added to the whole image's, so a right crop that ranks a look-alike just
  above the positive does not undo a first place the full image had. With
  :attr:`~region_rerank.reranker.RerankerConfig.close_margin` ``m > 0`` the weight adapts
  per query: when the view's best two candidates are less than ``m`` apart (the view
  cannot tell them apart), ``w`` becomes
  :attr:`~region_rerank.reranker.RerankerConfig.close_full_weight` and the whole image
  settles the order.
* ``"mix"`` -- ``(1 - w) * minmax(view similarity) + w * minmax(retrieval score)`` within
  the pool; a missing or NaN retrieval score counts as the pool's lowest.

Ranking is a stable sort, best first; ties keep the input order. Non-finite scores
(a candidate that could not be embedded) sort last, in input order.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from region_rerank.errors import ConfigError
from region_rerank.types import Candidate, ScoredCandidate

__all__ = [
    "FUSION_MODES",
    "fuse_scores",
    "rank_candidates",
    "input_order",
    "add_fusion_argument",
    "fusion_settings",
    "view_margin",
]

FUSION_MODES = ("crop", "max", "blend", "mix")


def _minmax(values: Sequence[float]) -> list[float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return [0.0 for _ in values]
    lo, hi = min(finite), max(finite)
    span = hi - lo
    return [((v - lo) / span if span > 0 else 1.0) if math.isfinite(v) else 0.0 for v in values]


def view_margin(view_scores: Sequence[float]) -> float:
    """The gap between the best and the second-best finite view similarity (``inf`` with
    fewer than two finite scores: nothing to tell apart)."""
    finite = sorted((v for v in map(float, view_scores) if math.isfinite(v)), reverse=True)
    return finite[0] - finite[1] if len(finite) > 1 else math.inf


def fuse_scores(
    view_scores: Sequence[float],
    *,
    mode: str,
    full_scores: Sequence[float] | None = None,
    retrieval_scores: Sequence[float | None] | None = None,
    mix_weight: float = 0.5,
    full_weight: float = 0.5,
    close_margin: float = 0.0,
    close_full_weight: float = 1.0,
) -> list[float]:
    """Combine per-candidate similarities into the score used for ordering.

    Args:
        view_scores: Similarity of each candidate to the chosen view.
        mode: One of :data:`FUSION_MODES`.
        full_scores: Similarity to the full image (needed by ``"max"`` and ``"blend"``).
        retrieval_scores: First-stage scores (used by ``"mix"``).
        mix_weight: Weight of the retrieval score in ``"mix"``.
        full_weight: Weight of the full-image similarity in ``"blend"``.
        close_margin: In ``"blend"``, a query whose :func:`view_margin` is below this uses
            ``close_full_weight`` instead of ``full_weight`` (0: never).
        close_full_weight: The full-image weight of such a query.
    """
    view = [float(v) for v in view_scores]
    if mode == "crop":
        return view
    if mode == "max":
        if full_scores is None:
            return view
        return [
            max(v, f) if math.isfinite(v) and math.isfinite(f) else v
            for v, f in zip(view, full_scores)
        ]
    if mode == "blend":
        if full_scores is None:
            return view
        close = close_margin > 0 and view_margin(view) < close_margin  # no sort when off
        w = close_full_weight if close else full_weight
        return [
            (1.0 - w) * v + w * f if math.isfinite(v) and math.isfinite(f) else v
            for v, f in zip(view, full_scores)
        ]
    if mode == "mix":
        retrieval = [
            float(r) if r is not None and math.isfinite(float(r)) else -math.inf
            for r in (retrieval_scores or [None] * len(view))
        ]
        nv, nr = _minmax(view), _minmax(retrieval)
        return [
            (1.0 - mix_weight) * a + mix_weight * b if math.isfinite(v) else v
            for a, b, v in zip(nv, nr, view)
        ]
    raise ConfigError(f"unknown fusion mode {mode!r}; choose one of {list(FUSION_MODES)}")


def rank_candidates(
    candidates: Sequence[Candidate],
    scores: Sequence[float],
    *,
    top_n: int | None = None,
    view_scores: Sequence[float] | None = None,
    full_scores: Sequence[float] | None = None,
) -> tuple[ScoredCandidate, ...]:
    """Order candidates by ``scores`` (stable, best first) and keep the first ``top_n``."""
    keyed = [
        (-s if math.isfinite(s) else math.inf, i) for i, s in enumerate(float(x) for x in scores)
    ]
    order = [i for _, i in sorted(keyed)]
    if top_n is not None:
        order = order[:top_n]
    return tuple(
        ScoredCandidate(
            candidate=candidates[i],
            score=float(scores[i]),
            rank=r + 1,
            input_index=i,
            crop_score=None if view_scores is None else float(view_scores[i]),
            full_score=None if full_scores is None else float(full_scores[i]),
        )
        for r, i in enumerate(order)
    )


def input_order(
    candidates: Sequence[Candidate], *, top_n: int | None = None
) -> tuple[ScoredCandidate, ...]:
    """The fallback ranking: input order, each candidate scored by its retrieval score
    (0.0 when missing or not finite), the first ``top_n`` kept."""
    ranking = rank_candidates(candidates, [0.0] * len(candidates), top_n=top_n)
    return tuple(
        replace(s, score=_finite_or_zero(candidates[s.input_index].retrieval_score))
        for s in ranking
    )


def _finite_or_zero(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(float(value)) else 0.0


def add_fusion_argument(parser: argparse.ArgumentParser) -> None:
    """``--fusion {crop,max,blend,mix}`` (default ``crop``), ``--full-weight``,
    ``--close-margin`` and ``--close-full-weight`` for the commands that re-rank (read back
    with :func:`fusion_settings`)."""
    parser.add_argument(
        "--fusion",
        choices=FUSION_MODES,
        default="crop",
        help="how the re-ranking scores use the view: crop (the paper: similarity to the "
        "chosen view), max (max of full-image and view similarity: a crop can only help), "
        "blend (weighted mean of the two, see --full-weight), mix (with the retrieval "
        "score); default crop",
    )
    parser.add_argument(
        "--full-weight",
        type=float,
        default=0.5,
        help="weight of the full-image similarity in --fusion blend, in [0, 1] (default 0.5)",
    )
    parser.add_argument(
        "--close-margin",
        type=float,
        default=0.0,
        help="with --fusion blend: a query whose view puts its best two candidates less "
        "than this apart is scored with --close-full-weight instead (default 0: never)",
    )
    parser.add_argument(
        "--close-full-weight",
        type=float,
        default=1.0,
        help="full-image weight of the queries under --close-margin, in [0, 1] (default 1)",
    )


def fusion_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~region_rerank.reranker.RerankerConfig` keyword arguments given by the
    options of :func:`add_fusion_argument`."""
    return {
        "fusion": args.fusion,
        "full_weight": args.full_weight,
        "close_margin": args.close_margin,
        "close_full_weight": args.close_full_weight,
    }
