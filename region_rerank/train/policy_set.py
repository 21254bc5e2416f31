"""The light policy's training set: every action's features (FULL + proposals) and the
pool scores of every action's view, computed once with the frozen scorer;
:meth:`PolicyTrainingSet.reward_table` turns them into rewards for any
:class:`~region_rerank.train.rewards.RewardConfig`. Given a
:class:`~region_rerank.index.CandidateIndex` of the KB it also keeps each action's ranking
statistics over the whole index (the retrieval-aware objective) and the queries whose
full-image pool misses the positive.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.cache import EmbeddingCache
from region_rerank.croppers.policy_encoder import PolicyEncoder, ViewEncoder
from region_rerank.croppers.proposal import Detector, PolicyArch, PolicyInputs
from region_rerank.errors import ConfigError
from region_rerank.progress import progress_bar
from region_rerank.train.data import covered_queries, pool_matrices, usable_queries, with_pools
from region_rerank.train.index_reward import index_rewards, index_stats
from region_rerank.train.rewards import (
    RewardConfig,
    action_rewards,
    combine_rewards,
    ranking_stats,
)

if TYPE_CHECKING:
    import torch

    from region_rerank.eval.datasets import EvalDataset
    from region_rerank.index import CandidateIndex

__all__ = [
    "PolicyTrainingSet",
    "build_policy_training_set",
    "FEATURES_VERSION",
    "cached_training_set",
    "save_training_set",
    "load_training_set",
]

logger = logging.getLogger(__name__)

#: Version of the features a training set holds; bumped when they change (2: detector
#: boxes' flag and rank features), so older caches are rebuilt, not reused.
FEATURES_VERSION = 2


@dataclass(frozen=True, eq=False)
class PolicyTrainingSet:
    """Precomputed inputs and pool scores of every action of every covered query.

    Attributes:
        query_ids: One per query.
        question_types: Benchmark question type per query (``None`` when unknown).
        question: ``Q x D`` question embeddings (or ``Q x T x D`` word vectors).
        views: ``Q x A x D`` view embeddings (action 0 = FULL).
        geometry: ``Q x A x G`` box geometry.
        mask: ``Q x A`` real actions.
        scores: ``Q x A x K`` pool scores of each action's view (padding 0).
        positive: ``Q x K`` relevance flags.
        pool_mask: ``Q x K`` real pool entries.
        arch: The proposal settings the actions come from.
        num_dropped: Queries left out (no positive in their pool, or, with an index, none
            in the index).
        index_stats: ``Q x A x 4`` ranking statistics of each action's view over the whole
            index (:func:`region_rerank.train.index_reward.index_stats`), or ``None``.
        covered: ``Q`` flags: the full-image pool holds a positive (``None``: all do).
    """

    query_ids: list[str]
    question_types: list[str | None]
    question: torch.Tensor
    views: torch.Tensor
    geometry: torch.Tensor
    mask: torch.Tensor
    scores: torch.Tensor
    positive: torch.Tensor
    pool_mask: torch.Tensor
    arch: PolicyArch
    num_dropped: int = 0
    index_stats: torch.Tensor | None = None
    covered: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.query_ids)

    def is_covered(self, i: int) -> bool:
        """Whether query ``i``'s full-image pool holds a positive."""
        return self.covered is None or bool(self.covered[i])

    def for_reward(self, config: RewardConfig | None = None) -> PolicyTrainingSet:
        """The queries that ``config``'s objective can reward: all of them when it weighs
        the whole-index reward, else those whose pool holds a positive.

        Raises:
            ConfigError: ``config.retrieval_weight > 0`` but the set has no index statistics.
        """
        cfg = config or RewardConfig()
        if cfg.retrieval_weight > 0:
            if self.index_stats is None:
                raise ConfigError(
                    "retrieval_weight > 0 needs a training set built with an index of the KB "
                    "(build_policy_training_set(..., index=CandidateIndex.build(...)))"
                )
            return self
        if self.covered is None or bool(self.covered.all()):
            return self
        return self.subset([i for i in range(len(self)) if self.is_covered(i)])

    def reward_table(self, config: RewardConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards of every action (``Q x A``, 0 on padding) with the plain reward
        functions, mixed with the whole-index rewards per ``config.retrieval_weight``, and
        whether each action's view ranks a positive first in the pool (``Q x A``).

        Raises:
            ConfigError: A query has no defined reward (use :meth:`for_reward` first).
        """
        import torch

        cfg = config or RewardConfig()
        rewards = torch.zeros(self.mask.shape)
        first = torch.zeros(self.mask.shape, dtype=torch.bool)
        for i in range(len(self)):
            n_act = int(self.mask[i].sum())
            k = self.pool_mask[i]
            pos = self.positive[i][k].tolist()
            rows = self.scores[i][:, k].tolist()
            pool: list[float | None] = [None] * n_act
            if self.is_covered(i):
                stats = [ranking_stats(row, pos) for row in rows[:n_act]]  # once per action
                pool = list(action_rewards(stats, cfg))
                for a, s in enumerate(stats):
                    first[i, a] = s.rank_first_positive == 1
            index: list[float | None] = [None] * n_act
            if cfg.retrieval_weight > 0 and self.index_stats is not None:
                index = list(index_rewards(self.index_stats[i, :n_act], cfg))
            for a in range(n_act):
                value = combine_rewards(pool[a], index[a], cfg)
                if value is None:
                    raise ConfigError(
                        f"query {self.query_ids[i]!r} has no positive in its pool: select the "
                        "rewardable queries with for_reward(config)"
                    )
                rewards[i, a] = value
        return rewards, first

    def subset(self, index: Sequence[int]) -> PolicyTrainingSet:
        """The queries at ``index`` (in that order)."""
        import torch

        idx = torch.as_tensor(list(index), dtype=torch.long)
        return PolicyTrainingSet(
            [self.query_ids[i] for i in idx.tolist()],
            [self.question_types[i] for i in idx.tolist()],
            self.question[idx],
            self.views[idx],
            self.geometry[idx],
            self.mask[idx],
            self.scores[idx],
            self.positive[idx],
            self.pool_mask[idx],
            self.arch,
            self.num_dropped,
            None if self.index_stats is None else self.index_stats[idx],
            None if self.covered is None else self.covered[idx],
        )


def build_policy_training_set(
    dataset: EvalDataset,
    scorer: Any,
    arch: PolicyArch | None = None,
    *,
    pool_k: int = 20,
    batch_size: int = 32,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    limit: int | None = None,
    index: CandidateIndex | None = None,
    encoder: PolicyEncoder | None = None,
    detector: Detector | None = None,
) -> PolicyTrainingSet:
    """Embed every action's view of every covered query and score the pools once.

    Features come from :meth:`ProposalPolicyCropper.policy_inputs`, the code path used at
    inference, so training and inference see identical inputs. The pool scores always
    come from ``scorer``'s embedding of each view (with a scorer-independent encoder, the
    views are embedded a second time, by the scorer, for the reward only).

    Args:
        dataset: Queries, KB and (optionally) pools; pools are built when missing.
        scorer: The frozen bi-encoder.
        arch: Proposal settings (and the network shape recorded with them).
        pool_k: Pool size when pools are built.
        batch_size: Queries per embedding batch.
        cache: Candidate-embedding cache (a private one by default).
        progress: Show a progress bar.
        limit: Use only the first ``limit`` usable queries.
        index: A :class:`~region_rerank.index.CandidateIndex` of the KB built with
            ``scorer``: keeps each action's whole-index ranking statistics (the
            retrieval-aware objective) and also the queries whose pool misses every
            positive, provided a positive is indexed.
        encoder: The policy's feature encoder (built from ``arch.encoder`` when ``None``).
        detector: The proposal detector (built from ``arch.detector`` when ``None``).

    Raises:
        ConfigError: No usable query, or an index built with another scorer.
    """
    import torch

    from region_rerank.croppers.proposal import ProposalPolicyCropper, build_policy_net

    check_range("batch_size", batch_size, 1)
    arch = arch or PolicyArch()
    cache = cache if cache is not None else EmbeddingCache()
    dataset = with_pools(dataset, scorer, pool_k, cache)
    queries, index_rows = usable_queries(dataset, scorer, index)
    if index is not None:
        index_emb = index.embeddings()
    covered_ids = {q.id for q in covered_queries(dataset)}
    dropped = len(dataset) - len(queries)
    if limit is not None:
        queries = queries[:limit]
    if not queries:
        raise ConfigError(f"no query of {dataset.name!r} has a positive in its pool")
    logger.info(
        "%d trainable queries (%d dropped: no positive to learn from)", len(queries), dropped
    )
    cropper = ProposalPolicyCropper(
        scorer, (build_policy_net(arch), arch), encoder=encoder, detector=detector
    )
    own_views = isinstance(cropper.encoder, ViewEncoder) and cropper.encoder.scorer is scorer
    scorer_dim = int(scorer.embed_texts(["a"]).shape[1])
    parts: list[dict[str, Any]] = []
    with progress_bar(len(queries), "policy features", progress) as bar:
        for i in range(0, len(queries), batch_size):
            batch = queries[i : i + batch_size]
            inputs = cropper.policy_inputs([q.to_query() for q in batch])
            scored = (
                inputs.views
                if own_views
                else _scorer_views(scorer, [q.to_query() for q in batch], inputs, batch_size)
            )
            mats = pool_matrices(dataset, batch, scorer, cache, scorer_dim)
            for j, (q, mat) in enumerate(zip(batch, mats)):
                ids = [cid for cid, _ in dataset.pools[q.id]]
                n_act = int(inputs.mask[j].sum())
                parts.append(
                    {
                        "views": inputs.views[j],
                        "geometry": inputs.geometry[j],
                        "mask": inputs.mask[j],
                        "question": inputs.question[j],
                        "scores": scorer.score(scored[j][:n_act], mat).float().cpu(),
                        "positive": torch.tensor([cid in q.positives for cid in ids]),
                    }
                )
                if index is not None:
                    sims = scorer.score(scored[j][:n_act], index_emb).float().cpu()
                    parts[-1]["index_stats"] = index_stats(sims, index_rows[q.id]).float()
            bar.update(len(batch))
    n_act = max(int(p["mask"].shape[0]) for p in parts)
    n_pool = max(int(p["positive"].shape[0]) for p in parts)
    q_n = len(parts)
    views = torch.zeros(q_n, n_act, arch.dim)
    geometry = torch.zeros(q_n, n_act, parts[0]["geometry"].shape[1])
    mask = torch.zeros(q_n, n_act, dtype=torch.bool)
    scores = torch.zeros(q_n, n_act, n_pool)
    positive = torch.zeros(q_n, n_pool, dtype=torch.bool)
    pool_mask = torch.zeros(q_n, n_pool, dtype=torch.bool)
    for i, p in enumerate(parts):
        a, k = p["mask"].shape[0], p["positive"].shape[0]
        views[i, :a], geometry[i, :a], mask[i, :a] = p["views"], p["geometry"], p["mask"]
        scores[i, : p["scores"].shape[0], :k] = p["scores"]
        positive[i, :k], pool_mask[i, :k] = p["positive"], True
    stats = None
    if index is not None:
        stats = torch.zeros(q_n, n_act, 4)
        for i, p in enumerate(parts):
            stats[i, : p["index_stats"].shape[0]] = p["index_stats"]
    return PolicyTrainingSet(
        [q.id for q in queries],
        [q.question_type for q in queries],
        _stack_padded([p["question"] for p in parts]),
        views,
        geometry,
        mask,
        scores,
        positive,
        pool_mask,
        arch,
        dropped,
        stats,
        None if index is None else torch.tensor([q.id in covered_ids for q in queries]),
    )


def _stack_padded(rows: list[torch.Tensor]) -> torch.Tensor:
    """Stack ``D`` vectors, or ``T x D`` word vectors zero-padded to the longest ``T``."""
    import torch

    if rows[0].dim() == 1:
        return torch.stack(rows)
    out = torch.zeros(len(rows), max(r.shape[0] for r in rows), rows[0].shape[1])
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out


def _scorer_views(
    scorer: Any, queries: Sequence[Any], inputs: PolicyInputs, batch_size: int
) -> list[torch.Tensor]:
    """The scorer's embedding of every action's view (FULL first), for the rewards."""
    from region_rerank.images import load_image
    from region_rerank.views import embed_views

    images = [load_image(q.image) for q in queries]
    views = [[None, *b] for b in inputs.boxes]
    return [e.float().cpu() for e in embed_views(scorer, images, views, batch_size=batch_size)]


def save_training_set(
    ts: PolicyTrainingSet, path: str | Any, source: dict[str, Any] | None = None
) -> None:
    """Write ``ts`` with ``torch.save`` (a cache for repeated training runs); ``source``
    describes what it was built from (see :func:`cached_training_set`)."""
    import torch

    torch.save(
        {
            "source": None if source is None else {**source, "features": FEATURES_VERSION},
            "query_ids": ts.query_ids,
            "question_types": ts.question_types,
            "tensors": {
                k: getattr(ts, k)
                for k in (
                    "question",
                    "views",
                    "geometry",
                    "mask",
                    "scores",
                    "positive",
                    "pool_mask",
                )
            },
            "arch": {**ts.arch.__dict__, "scales": list(ts.arch.scales)},
            "num_dropped": ts.num_dropped,
            "index_stats": ts.index_stats,
            "covered": ts.covered,
        },
        str(path),
    )


def cached_training_set(
    path: str | Any, arch: PolicyArch, source: dict[str, Any]
) -> PolicyTrainingSet | None:
    """The set cached at ``path`` if it was built for ``arch`` from ``source`` (data, split,
    queries, encoder card, feature version...), else ``None`` (rebuild it): a cache written
    from other data, by another encoder or by another version of the features is never
    reused."""
    import torch

    if not os.path.isfile(str(path)):
        return None
    raw = torch.load(str(path), weights_only=True)
    if raw.get("source") != {**source, "features": FEATURES_VERSION}:
        logger.info("%s was built from other data or features; rebuilding it", path)
        return None
    ts = load_training_set(path)
    return ts if ts.arch == arch else None


def load_training_set(path: str | Any) -> PolicyTrainingSet:
    """Read a set written by :func:`save_training_set`."""
    import torch

    raw = torch.load(str(path), weights_only=True)
    arch = PolicyArch(**{**raw["arch"], "scales": tuple(raw["arch"]["scales"])})
    t = raw["tensors"]
    return PolicyTrainingSet(
        list(raw["query_ids"]),
        list(raw["question_types"]),
        t["question"],
        t["views"],
        t["geometry"],
        t["mask"],
        t["scores"],
        t["positive"],
        t["pool_mask"],
        arch,
        int(raw["num_dropped"]),
        raw.get("index_stats"),
        raw.get("covered"),
    )
