"""The retrieval side of the r-GRPO objective: each view's ranking of the whole index.

The re-ranking reward (:mod:`region_rerank.train.rewards`) compares a crop's ranking of a
fixed pool with the full image's. A pool retrieved with the full image cannot reward a crop
for finding a positive that the full image never retrieved, and region-aware retrieval
(:class:`~region_rerank.retrieval.RegionRetriever`) searches with the crop. Here the same
statistics (MRR, NDCG, first-positive rank, margin) are taken over the ranking of *every*
indexed entry by a view, so :func:`~region_rerank.train.rewards.region_reward_from_stats`
gives the same mixture against the full image's first-stage search.

Ranks follow :func:`~region_rerank.train.rewards.ranking_stats` exactly (best first, ties
in index order), computed with tensor operations: ``A x N`` scores and the positives'
columns, with no sort of the whole index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from region_rerank.errors import ConfigError
from region_rerank.train.rewards import RankingStats, RewardConfig, action_rewards

if TYPE_CHECKING:
    import torch

__all__ = ["STAT_FIELDS", "index_stats", "stats_rows", "index_rewards"]

#: The columns of :func:`index_stats` (``rank`` is the first positive's 1-based rank).
STAT_FIELDS = ("mrr", "ndcg", "rank", "margin")


def index_stats(scores: torch.Tensor, positives: Sequence[int]) -> torch.Tensor:
    """Ranking statistics of each row of ``scores`` over the whole index.

    Args:
        scores: ``A x N`` similarities of ``A`` views to the ``N`` indexed entries (finite).
        positives: Column indices of the positive entries (at least one, distinct).

    Returns:
        ``A x 4`` float64 tensor: MRR, NDCG (binary relevance, all ``N`` entries), the
        first positive's rank and the margin (mean positive score minus the best negative
        score; 1.0 when every entry is positive), as :func:`ranking_stats` would give for
        each row.

    Raises:
        ConfigError: No positive, repeated or out-of-range positives, non-finite scores.
    """
    import torch

    if scores.dim() != 2:
        raise ConfigError(f"scores must be A x N, got shape {tuple(scores.shape)}")
    n = int(scores.shape[1])
    pos = torch.as_tensor(list(positives), dtype=torch.long)
    if pos.numel() == 0:
        raise ConfigError("the index holds no positive for this query")
    if pos.unique().numel() != pos.numel() or int(pos.min()) < 0 or int(pos.max()) >= n:
        raise ConfigError(f"positives must be distinct column indices below {n}")
    s = scores.double()
    if not bool(torch.isfinite(s).all()):
        raise ConfigError("index scores must be finite")
    sp = s[:, pos]  # A x P
    above = (s[:, None, :] > sp[:, :, None]).sum(-1)  # A x P: strictly better entries
    cols = torch.arange(n)
    tied_before = (
        (s[:, None, :] == sp[:, :, None]) & (cols[None, None, :] < pos[None, :, None])
    ).sum(-1)
    ranks = (above + tied_before + 1).double()  # A x P, 1-based, stable-sort ranks
    first = ranks.min(dim=1).values
    n_pos = int(pos.numel())
    ideal = (1.0 / torch.log2(torch.arange(2, n_pos + 2, dtype=torch.float64))).sum()
    ndcg = (1.0 / torch.log2(ranks + 1.0)).sum(dim=1) / ideal
    neg = torch.ones(n, dtype=torch.bool)
    neg[pos] = False
    if bool(neg.any()):
        margin = sp.mean(dim=1) - s[:, neg].max(dim=1).values
    else:
        margin = torch.ones(s.shape[0], dtype=torch.float64)
    return torch.stack([1.0 / first, ndcg, first, margin], dim=1)


def stats_rows(table: torch.Tensor) -> list[RankingStats]:
    """The rows of an :func:`index_stats` table as :class:`RankingStats`."""
    return [
        RankingStats(float(m), float(g), round(float(r)), float(d)) for m, g, r, d in table.tolist()
    ]


def index_rewards(table: torch.Tensor, config: RewardConfig | None = None) -> list[float]:
    """Whole-index rewards of the actions of one query: row 0 is FULL (the full image's
    search), every other row a REGION view, rewarded against row 0.

    Args:
        table: ``A x 4`` from :func:`index_stats` (row 0: the full image).
        config: The reward settings (reference defaults when ``None``).
    """
    return action_rewards(stats_rows(table), config)
