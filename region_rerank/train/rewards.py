"""The region-aware r-GRPO reward (docs/method.md section 4), as plain functions.

For a REGION action with box ``b``, against the full-image ranking of the *same* pool::

    R(REGION, b) = s * max(w1*dMRR + w2*dNDCG + w3*dRank + w4*dMargin, floor)
    dMRR    = MRR(crop) - MRR(full)
    dNDCG   = NDCG(crop) - NDCG(full)                  (binary relevance, whole pool)
    dRank   = log(rank_full + 1) - log(rank_crop + 1)  (first positive, 1-based, natural log)
    dMargin = margin(crop) - margin(full)
    margin  = mean(positive scores) - max(negative scores)
              (1.0 when the pool has no negative, 0.0 when it has no positive)

A malformed box (the policy said it crops but no box could be parsed, or the box is empty
or inverted after clamping to the image) earns ``malformed_penalty`` (-1). FULL earns
``full_first`` (+1) when the full image already ranks a positive first, else
``full_not_first`` (0). Reference defaults: ``w = (0.2, 0.2, 0.2, 0.4)``,
``floor = -0.05``, ``s = 5``.

Rankings sort scores best first with a stable sort (ties keep the pool order, non-finite
scores last), exactly like :func:`region_rerank.fusion.rank_candidates`.

**No positive in the pool.** Every term is undefined or constant then, and docs/method.md keeps
only queries whose pool holds a positive for training. :func:`ranking_stats` still returns
``(0.0, 0.0, None, 0.0)``, but :func:`region_reward` and :func:`full_reward` raise
:class:`NoPositiveError`; :func:`make_trl_reward` returns ``None`` (TRL's "no reward")
for such a sample (:mod:`region_rerank.train.trl_reward`).

Variants (:attr:`RewardConfig.variant`):

* ``"relative"`` (the paper) -- the mixture of deltas above.
* ``"absolute"`` -- the same mixture on the crop's own metrics:
  ``s * max(w1*MRR(crop) + w2*NDCG(crop) + w3*(log 2 - log(rank_crop + 1))
  + w4*margin(crop), floor)``; the rank term is the crop's rank against an ideal rank 1
  (0 when first), so every term still grows when the crop ranks better. The full image is
  not used for REGION rewards; FULL keeps its own reward.

The margin ablation (:attr:`RewardConfig.use_margin` ``False``) sets ``w4`` to 0 and keeps
the other weights unchanged (no re-normalisation).

**Retrieval-aware objective** (:attr:`RewardConfig.retrieval_weight` ``lam``): the same
reward is also computed on the ranking of the *whole index* by each view (first-stage
search with the crop, against first-stage search with the full image;
:mod:`region_rerank.train.index_reward`), and the two are mixed::

    R = (1 - lam) * R_pool + lam * R_index

``lam = 0`` is the paper's re-ranking reward. A query whose full-image pool holds no
positive (the re-ranking reward is undefined) is trained by ``R_index`` alone when
``lam > 0``: exactly the queries a crop can bring into the pool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from region_rerank._validate import check_choice
from region_rerank.errors import ConfigError, RegionRerankError

__all__ = [
    "REWARD_VARIANTS",
    "NoPositiveError",
    "RewardConfig",
    "RankingStats",
    "ranking_stats",
    "region_reward",
    "full_reward",
    "region_reward_from_stats",
    "full_reward_from_stats",
    "action_rewards",
    "combine_rewards",
    "malformed_reward",
]

REWARD_VARIANTS = ("relative", "absolute")


class NoPositiveError(RegionRerankError, ValueError):
    """The pool holds no positive: the reward is undefined (such queries are not trained)."""


@dataclass(frozen=True)
class RewardConfig:
    """Settings of the r-GRPO reward (defaults: the reference code's).

    Attributes:
        weights: ``(w_mrr, w_ndcg, w_rank, w_margin)``, each finite and >= 0.
        floor: Lower clip of the mixture before scaling (finite, <= 0).
        scale: The factor ``s`` (finite, > 0).
        malformed_penalty: Reward of a malformed-box action.
        full_first: Reward of FULL when the full image ranks a positive first.
        full_not_first: Reward of FULL otherwise.
        use_margin: ``False`` drops the margin term (the paper's ablation).
        variant: ``"relative"`` (deltas against the full image) or ``"absolute"``.
        retrieval_weight: ``lam`` in [0, 1], the share of the whole-index (retrieval)
            reward in the objective (0: re-ranking only, the paper; 1: retrieval only).

    Raises:
        ConfigError: Naming the invalid field and what is allowed.
    """

    weights: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.4)
    floor: float = -0.05
    scale: float = 5.0
    malformed_penalty: float = -1.0
    full_first: float = 1.0
    full_not_first: float = 0.0
    use_margin: bool = True
    variant: str = "relative"
    retrieval_weight: float = 0.0

    def __post_init__(self) -> None:
        weights = tuple(self.weights)
        if len(weights) != 4:
            raise ConfigError(
                f"weights={self.weights!r} must have 4 values (mrr, ndcg, rank, margin)"
            )
        for name, w in zip(("mrr", "ndcg", "rank", "margin"), weights):
            if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ConfigError(f"weights[{name}]={w!r} must be a finite number >= 0")
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))
        for name in ("floor", "scale", "malformed_penalty", "full_first", "full_not_first"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name}={value!r} must be a finite number")
        if self.floor > 0:
            raise ConfigError(f"floor={self.floor!r} must be <= 0")
        if self.scale <= 0:
            raise ConfigError(f"scale={self.scale!r} must be > 0")
        if not isinstance(self.use_margin, bool):
            raise ConfigError(f"use_margin={self.use_margin!r} must be True or False")
        check_choice("variant", self.variant, REWARD_VARIANTS)
        lam = self.retrieval_weight
        if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not 0 <= lam <= 1:
            raise ConfigError(f"retrieval_weight={lam!r} must be a number in [0, 1]")

    @property
    def effective_weights(self) -> tuple[float, float, float, float]:
        """The weights used: ``w_margin`` is 0 when :attr:`use_margin` is off."""
        w1, w2, w3, w4 = self.weights
        return (w1, w2, w3, w4 if self.use_margin else 0.0)


class RankingStats(NamedTuple):
    """Metrics of one ranking of a pool.

    Attributes:
        mrr: ``1 / rank`` of the first positive (0.0 without positives).
        ndcg: NDCG over the whole pool with binary relevance (0.0 without positives).
        rank_first_positive: 1-based rank of the first positive (``None`` without).
        margin: ``mean(positive scores) - max(negative scores)`` (1.0 without negatives,
            0.0 without positives).
    """

    mrr: float
    ndcg: float
    rank_first_positive: int | None
    margin: float


def _check(scores: Sequence[float], is_positive: Sequence[bool]) -> tuple[list[float], list[bool]]:
    """Scores as floats, a non-finite score (NaN, +-inf: a candidate that could not be
    scored) replaced by one below every finite score of the pool (so it ranks last, as in
    the re-ranker, and margins stay finite)."""
    raw = [float(s) for s in scores]
    pos = [bool(p) for p in is_positive]
    if len(raw) != len(pos):
        raise ConfigError(f"{len(raw)} scores but {len(pos)} positive flags")
    if not raw:
        raise ConfigError("the pool is empty")
    finite = [v for v in raw if math.isfinite(v)]
    worst = (min(finite) - 1.0) if finite else 0.0
    return [v if math.isfinite(v) else worst for v in raw], pos


def ranking_stats(scores: Sequence[float], is_positive: Sequence[bool]) -> RankingStats:
    """MRR, NDCG, first-positive rank and margin of the ranking given by ``scores``.

    Args:
        scores: One score per pool entry (higher is better).
        is_positive: One relevance flag per pool entry.

    Raises:
        ConfigError: Lengths differ or the pool is empty.
    """
    vals, pos = _check(scores, is_positive)
    order = sorted(range(len(vals)), key=lambda i: -vals[i])
    n_pos = sum(pos)
    if n_pos == 0:
        return RankingStats(0.0, 0.0, None, 0.0)
    rank = next(r for r, i in enumerate(order, start=1) if pos[i])
    dcg = sum(1.0 / math.log2(r + 1) for r, i in enumerate(order, start=1) if pos[i])
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, n_pos + 1))
    negatives = [v for v, p in zip(vals, pos) if not p]
    mean_pos = sum(v for v, p in zip(vals, pos) if p) / n_pos
    margin = mean_pos - max(negatives) if negatives else 1.0
    return RankingStats(1.0 / rank, dcg / ideal, rank, margin)


def _mixture(config: RewardConfig, terms: tuple[float, float, float, float]) -> float:
    mix = sum(w * t for w, t in zip(config.effective_weights, terms))
    return config.scale * max(mix, config.floor)


def region_reward(
    full_scores: Sequence[float] | None,
    crop_scores: Sequence[float] | None,
    is_positive: Sequence[bool],
    config: RewardConfig | None = None,
) -> float:
    """Reward of a REGION action (see the module docstring).

    Args:
        full_scores: Pool scores against the full image (unused by ``"absolute"``, which
            accepts ``None``).
        crop_scores: Pool scores against the crop; ``None`` means the box was malformed
            and gives :attr:`RewardConfig.malformed_penalty`.
        is_positive: Relevance flag per pool entry.
        config: :class:`RewardConfig` (reference defaults when ``None``).

    Raises:
        NoPositiveError: The pool holds no positive.
        ConfigError: Mismatched lengths, or ``full_scores`` missing for ``"relative"``.
    """
    cfg = config or RewardConfig()
    if not any(bool(p) for p in is_positive):
        raise NoPositiveError("the pool holds no positive; the reward is undefined")
    if crop_scores is None:
        return float(cfg.malformed_penalty)
    crop = ranking_stats(crop_scores, is_positive)
    if cfg.variant == "absolute":
        return region_reward_from_stats(None, crop, cfg)
    if full_scores is None:
        raise ConfigError("the relative reward needs the full-image scores")
    if len(full_scores) != len(crop_scores):
        raise ConfigError(f"{len(full_scores)} full scores but {len(crop_scores)} crop scores")
    return region_reward_from_stats(ranking_stats(full_scores, is_positive), crop, cfg)


def region_reward_from_stats(
    full: RankingStats | None, crop: RankingStats, config: RewardConfig | None = None
) -> float:
    """:func:`region_reward` from the two rankings' statistics (any ranking: a pool or
    the whole index). ``full`` may be ``None`` for the ``"absolute"`` variant.

    Raises:
        NoPositiveError: A ranking holds no positive.
        ConfigError: ``full`` missing for ``"relative"``.
    """
    cfg = config or RewardConfig()
    if crop.rank_first_positive is None or (full is not None and full.rank_first_positive is None):
        raise NoPositiveError("the ranking holds no positive; the reward is undefined")
    if cfg.variant == "absolute":
        rank_term = math.log(2.0) - math.log(crop.rank_first_positive + 1)
        return _mixture(cfg, (crop.mrr, crop.ndcg, rank_term, crop.margin))
    if full is None:
        raise ConfigError("the relative reward needs the full-image ranking")
    assert full.rank_first_positive is not None
    d_rank = math.log(full.rank_first_positive + 1) - math.log(crop.rank_first_positive + 1)
    return _mixture(
        cfg, (crop.mrr - full.mrr, crop.ndcg - full.ndcg, d_rank, crop.margin - full.margin)
    )


def full_reward_from_stats(full: RankingStats, config: RewardConfig | None = None) -> float:
    """:func:`full_reward` from the full-image ranking's statistics.

    Raises:
        NoPositiveError: The ranking holds no positive.
    """
    cfg = config or RewardConfig()
    if full.rank_first_positive is None:
        raise NoPositiveError("the ranking holds no positive; the reward is undefined")
    return float(cfg.full_first if full.rank_first_positive == 1 else cfg.full_not_first)


def action_rewards(
    stats: Sequence[RankingStats], config: RewardConfig | None = None
) -> list[float]:
    """Rewards of one query's actions from their rankings' statistics: ``stats[0]`` is
    FULL (the full image), every other entry a REGION view rewarded against it.

    Raises:
        NoPositiveError: The rankings hold no positive.
    """
    full = stats[0]
    return [full_reward_from_stats(full, config)] + [
        region_reward_from_stats(full, crop, config) for crop in stats[1:]
    ]


def combine_rewards(
    pool: float | None, index: float | None, config: RewardConfig | None = None
) -> float | None:
    """The objective: ``(1 - lam) * pool + lam * index`` (``lam`` =
    :attr:`RewardConfig.retrieval_weight`).

    ``pool`` is ``None`` when the pool holds no positive: the index reward alone then
    (``None`` when ``lam`` is 0, as for the re-ranking reward). ``index`` may be ``None``
    only when ``lam`` is 0.

    Raises:
        ConfigError: ``index`` is missing while ``lam > 0``.
    """
    cfg = config or RewardConfig()
    lam = float(cfg.retrieval_weight)
    if lam == 0.0:
        return pool
    if index is None:
        raise ConfigError("retrieval_weight > 0 needs the whole-index reward of the action")
    if pool is None:
        return float(index)
    return (1.0 - lam) * pool + lam * float(index)


def full_reward(
    full_scores: Sequence[float], is_positive: Sequence[bool], config: RewardConfig | None = None
) -> float:
    """Reward of the FULL action: :attr:`RewardConfig.full_first` (+1) when the full image
    already ranks a positive first, else :attr:`RewardConfig.full_not_first` (0).

    Raises:
        NoPositiveError: The pool holds no positive.
    """
    return full_reward_from_stats(ranking_stats(full_scores, is_positive), config)


def malformed_reward(config: RewardConfig | None = None) -> float:
    """Reward of a malformed-box action (:attr:`RewardConfig.malformed_penalty`, -1)."""
    return float((config or RewardConfig()).malformed_penalty)
