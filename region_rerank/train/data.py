"""Training sets built from the evaluation loaders and pools.

Both builders keep only queries whose pool holds a positive (docs/method.md section 4) and
embed each distinct candidate once with the frozen scorer (through an
:class:`~region_rerank.cache.EmbeddingCache`), so a reward is a cheap matrix product.

* :func:`build_reward_examples` -- per query: image, question, the pool's candidate
  embeddings and relevance flags, the full-image scores. The columns a TRL reward made
  by :func:`region_rerank.train.rewards.make_trl_reward` reads (VLM policies).
* :func:`build_policy_training_set` -- for the light proposal policy: every action's
  features (FULL + proposals) and the pool scores of every action's view, computed once;
  :meth:`PolicyTrainingSet.reward_table` turns them into rewards for any
  :class:`~region_rerank.train.rewards.RewardConfig`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.cache import EmbeddingCache, pool_embeddings
from region_rerank.croppers.proposal import PolicyArch
from region_rerank.errors import ConfigError
from region_rerank.progress import progress_bar
from region_rerank.train.rewards import RewardConfig, full_reward, ranking_stats, region_reward

if TYPE_CHECKING:
    import torch

    from region_rerank.eval.datasets import EvalDataset, EvalQuery

__all__ = [
    "RewardExample",
    "PolicyTrainingSet",
    "covered_queries",
    "build_reward_examples",
    "reward_columns",
    "build_policy_training_set",
    "save_training_set",
    "load_training_set",
]

logger = logging.getLogger(__name__)


def _with_pools(dataset: EvalDataset, scorer: Any, pool_k: int, cache: EmbeddingCache) -> Any:
    from dataclasses import replace

    from region_rerank.eval.pools import build_pools

    if dataset.pools:
        return dataset
    logger.info("dataset %r has no pools; building top-%d pools", dataset.name, pool_k)
    return replace(dataset, pools=build_pools(dataset, scorer, k=pool_k, cache=cache))


def covered_queries(dataset: EvalDataset) -> list[EvalQuery]:
    """The queries whose pool holds at least one positive (the trainable ones)."""
    out = []
    for q in dataset.queries:
        ids = {cid for cid, _ in dataset.pools.get(q.id, ())}
        if q.positives & ids:
            out.append(q)
    return out


@dataclass(frozen=True, eq=False)
class RewardExample:
    """What the reward needs for one training query.

    Attributes:
        query_id, image, question: The query.
        candidate_ids: The pool, in retrieval order.
        candidate_embeddings: ``K x D`` frozen-scorer embeddings of the pool (CPU).
        is_positive: ``K`` relevance flags (at least one True).
        full_scores: ``K`` similarities of the pool to the full query image.
    """

    query_id: str
    image: Any
    question: str
    candidate_ids: tuple[str, ...]
    candidate_embeddings: torch.Tensor
    is_positive: tuple[bool, ...]
    full_scores: tuple[float, ...]


def _pool_matrices(
    dataset: EvalDataset, queries: Sequence[EvalQuery], scorer: Any, cache: EmbeddingCache, dim: int
) -> list[torch.Tensor]:
    pools = [dataset.candidates(q.id) for q in queries]
    mats, _ = pool_embeddings(
        scorer, pools, cache, dim=dim, device="cpu", batch_size=getattr(scorer, "batch_size", 32)
    )
    return mats


def build_reward_examples(
    dataset: EvalDataset,
    scorer: Any,
    *,
    pool_k: int = 20,
    batch_size: int = 32,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
) -> list[RewardExample]:
    """Reward inputs for every covered query of ``dataset`` (pools built when missing).

    Raises:
        ConfigError: No query has a positive in its pool.
    """
    from region_rerank.images import load_image

    check_range("batch_size", batch_size, 1)
    cache = cache if cache is not None else EmbeddingCache()
    dataset = _with_pools(dataset, scorer, pool_k, cache)
    queries = covered_queries(dataset)
    if not queries:
        raise ConfigError(f"no query of {dataset.name!r} has a positive in its pool")
    logger.info("%d of %d queries have a positive in their pool", len(queries), len(dataset))
    out: list[RewardExample] = []
    with progress_bar(len(queries), "reward examples", progress) as bar:
        for i in range(0, len(queries), batch_size):
            batch = queries[i : i + batch_size]
            full = scorer.embed_images([load_image(q.image) for q in batch]).float().cpu()
            mats = _pool_matrices(dataset, batch, scorer, cache, int(full.shape[1]))
            for q, f, mat in zip(batch, full, mats):
                ids = tuple(cid for cid, _ in dataset.pools[q.id])
                out.append(
                    RewardExample(
                        query_id=q.id,
                        image=q.image,
                        question=q.question,
                        candidate_ids=ids,
                        candidate_embeddings=mat,
                        is_positive=tuple(cid in q.positives for cid in ids),
                        full_scores=tuple(scorer.score(f[None], mat)[0].tolist()),
                    )
                )
            bar.update(len(batch))
    return out


def reward_columns(examples: Sequence[RewardExample]) -> dict[str, list[Any]]:
    """Column-wise view (``image``, ``question``, ``candidate_embeddings``,
    ``is_positive``, ``full_scores``, ``query_id``) for a TRL dataset / reward kwargs."""
    return {
        "query_id": [e.query_id for e in examples],
        "image": [e.image for e in examples],
        "question": [e.question for e in examples],
        "candidate_embeddings": [e.candidate_embeddings for e in examples],
        "is_positive": [list(e.is_positive) for e in examples],
        "full_scores": [list(e.full_scores) for e in examples],
    }


@dataclass(frozen=True, eq=False)
class PolicyTrainingSet:
    """Precomputed inputs and pool scores of every action of every covered query.

    Attributes:
        query_ids: One per query.
        question_types: Benchmark question type per query (``None`` when unknown).
        question: ``Q x D`` question embeddings.
        views: ``Q x A x D`` view embeddings (action 0 = FULL).
        geometry: ``Q x A x G`` box geometry.
        mask: ``Q x A`` real actions.
        scores: ``Q x A x K`` pool scores of each action's view (padding 0).
        positive: ``Q x K`` relevance flags.
        pool_mask: ``Q x K`` real pool entries.
        arch: The proposal settings the actions come from.
        num_dropped: Queries left out because their pool holds no positive.
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

    def __len__(self) -> int:
        return len(self.query_ids)

    def reward_table(self, config: RewardConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards of every action (``Q x A``, 0 on padding) with the plain reward
        functions, and whether each action's view ranks a positive first (``Q x A``)."""
        import torch

        cfg = config or RewardConfig()
        rewards = torch.zeros(self.mask.shape)
        first = torch.zeros(self.mask.shape, dtype=torch.bool)
        for i in range(len(self)):
            k = self.pool_mask[i]
            pos = self.positive[i][k].tolist()
            rows = self.scores[i][:, k].tolist()
            full = rows[0]
            for a in range(int(self.mask[i].sum())):
                rewards[i, a] = (
                    full_reward(full, pos, cfg)
                    if a == 0
                    else region_reward(full, rows[a], pos, cfg)
                )
                first[i, a] = ranking_stats(rows[a], pos).rank_first_positive == 1
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
) -> PolicyTrainingSet:
    """Embed every action's view of every covered query and score the pools once.

    Features come from :meth:`ProposalPolicyCropper.policy_inputs`, the code path used at
    inference, so training and inference see identical inputs.

    Args:
        dataset: Queries, KB and (optionally) pools; pools are built when missing.
        scorer: The frozen bi-encoder.
        arch: Proposal settings (and the network shape recorded with them).
        pool_k: Pool size when pools are built.
        batch_size: Queries per embedding batch.
        cache: Candidate-embedding cache (a private one by default).
        progress: Show a progress bar.
        limit: Use only the first ``limit`` covered queries.

    Raises:
        ConfigError: No query has a positive in its pool.
    """
    import torch

    from region_rerank.croppers.proposal import ProposalPolicyCropper, build_policy_net

    check_range("batch_size", batch_size, 1)
    arch = arch or PolicyArch()
    cache = cache if cache is not None else EmbeddingCache()
    dataset = _with_pools(dataset, scorer, pool_k, cache)
    queries = covered_queries(dataset)
    dropped = len(dataset) - len(queries)
    if limit is not None:
        queries = queries[:limit]
    if not queries:
        raise ConfigError(f"no query of {dataset.name!r} has a positive in its pool")
    logger.info("%d trainable queries (%d dropped: no positive in the pool)", len(queries), dropped)
    cropper = ProposalPolicyCropper(scorer, (build_policy_net(arch), arch))
    parts: list[dict[str, Any]] = []
    with progress_bar(len(queries), "policy features", progress) as bar:
        for i in range(0, len(queries), batch_size):
            batch = queries[i : i + batch_size]
            inputs = cropper.policy_inputs([q.to_query() for q in batch])
            if inputs.question.shape[1] != arch.dim:
                raise ConfigError(
                    f"the scorer embeds in {inputs.question.shape[1]} dimensions, arch.dim is "
                    f"{arch.dim}"
                )
            mats = _pool_matrices(dataset, batch, scorer, cache, arch.dim)
            for j, (q, mat) in enumerate(zip(batch, mats)):
                ids = [cid for cid, _ in dataset.pools[q.id]]
                parts.append(
                    {
                        "views": inputs.views[j],
                        "geometry": inputs.geometry[j],
                        "mask": inputs.mask[j],
                        "question": inputs.question[j],
                        "scores": scorer.score(inputs.views[j], mat).float().cpu(),
                        "positive": torch.tensor([cid in q.positives for cid in ids]),
                    }
                )
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
        scores[i, :a, :k] = p["scores"]
        positive[i, :k], pool_mask[i, :k] = p["positive"], True
    return PolicyTrainingSet(
        [q.id for q in queries],
        [q.question_type for q in queries],
        torch.stack([p["question"] for p in parts]),
        views,
        geometry,
        mask,
        scores,
        positive,
        pool_mask,
        arch,
        dropped,
    )


def save_training_set(ts: PolicyTrainingSet, path: str | Any) -> None:
    """Write ``ts`` with ``torch.save`` (a cache for repeated training runs)."""
    import torch

    torch.save(
        {
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
        },
        str(path),
    )


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
    )
