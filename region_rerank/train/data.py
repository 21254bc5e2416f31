"""Reward inputs built from the evaluation loaders and pools (VLM policies).

Only queries whose pool holds a positive are kept (docs/method.md section 4), or, given a
:class:`~region_rerank.index.CandidateIndex` of the KB (the retrieval-aware objective),
every query whose positive is indexed. Each distinct candidate is embedded once with the
frozen scorer (through an :class:`~region_rerank.cache.EmbeddingCache`), so a reward is a
cheap matrix product.

:func:`build_reward_examples` gives per query: image, question, the pool's candidate
embeddings and relevance flags, the full-image scores (and the positives' index rows): the
columns a TRL reward made by :func:`region_rerank.train.trl_reward.make_trl_reward` reads.
The light policy's training set is in :mod:`region_rerank.train.policy_set`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.cache import EmbeddingCache, pool_embeddings
from region_rerank.errors import ConfigError
from region_rerank.progress import progress_bar

if TYPE_CHECKING:
    import torch

    from region_rerank.eval.datasets import EvalDataset, EvalQuery
    from region_rerank.index import CandidateIndex

__all__ = [
    "RewardExample",
    "covered_queries",
    "usable_queries",
    "with_pools",
    "pool_matrices",
    "build_reward_examples",
    "reward_columns",
]

logger = logging.getLogger(__name__)


def with_pools(dataset: EvalDataset, scorer: Any, pool_k: int, cache: EmbeddingCache) -> Any:
    """``dataset`` with top-``pool_k`` full-image pools built when it has none."""
    from dataclasses import replace

    from region_rerank.eval.pools import build_pools

    if dataset.pools:
        return dataset
    logger.info("dataset %r has no pools; building top-%d pools", dataset.name, pool_k)
    return replace(dataset, pools=build_pools(dataset, scorer, k=pool_k, cache=cache))


def usable_queries(
    dataset: EvalDataset, scorer: Any, index: CandidateIndex | None
) -> tuple[list[EvalQuery], dict[str, tuple[int, ...]]]:
    """The queries to train on, and (with an index) each one's positives' index rows."""
    if index is None:
        return covered_queries(dataset), {}
    index.check_scorer(scorer)
    at = index.positions
    rows = {q.id: tuple(sorted(at[p] for p in q.positives if p in at)) for q in dataset.queries}
    return [q for q in dataset.queries if rows[q.id]], rows


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
        is_positive: ``K`` relevance flags (at least one True, unless the example was
            built with an index: then the pool may miss every positive).
        full_scores: ``K`` similarities of the pool to the full query image.
        index_positive: Rows of the positives in the index of the KB (empty without one).
    """

    query_id: str
    image: Any
    question: str
    candidate_ids: tuple[str, ...]
    candidate_embeddings: torch.Tensor
    is_positive: tuple[bool, ...]
    full_scores: tuple[float, ...]
    index_positive: tuple[int, ...] = ()


def pool_matrices(
    dataset: EvalDataset, queries: Sequence[EvalQuery], scorer: Any, cache: EmbeddingCache, dim: int
) -> list[torch.Tensor]:
    """The ``K x D`` candidate embeddings of each query's pool (on the CPU)."""
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
    index: CandidateIndex | None = None,
) -> list[RewardExample]:
    """Reward inputs for every covered query of ``dataset`` (pools built when missing).

    With ``index`` (a :class:`~region_rerank.index.CandidateIndex` of the KB built with
    ``scorer``), every query with an indexed positive is kept, covered or not, and its
    positives' index rows are recorded for the retrieval-aware reward.

    Raises:
        ConfigError: No usable query, or an index built with another scorer.
    """
    from region_rerank.images import load_image

    check_range("batch_size", batch_size, 1)
    cache = cache if cache is not None else EmbeddingCache()
    dataset = with_pools(dataset, scorer, pool_k, cache)
    queries, rows = usable_queries(dataset, scorer, index)
    if not queries:
        raise ConfigError(f"no query of {dataset.name!r} has a positive in its pool")
    logger.info("%d of %d queries are usable for training", len(queries), len(dataset))
    out: list[RewardExample] = []
    with progress_bar(len(queries), "reward examples", progress) as bar:
        for i in range(0, len(queries), batch_size):
            batch = queries[i : i + batch_size]
            full = scorer.embed_images([load_image(q.image) for q in batch]).float().cpu()
            mats = pool_matrices(dataset, batch, scorer, cache, int(full.shape[1]))
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
                        index_positive=rows.get(q.id, ()),
                    )
                )
            bar.update(len(batch))
    return out


def reward_columns(examples: Sequence[RewardExample]) -> dict[str, list[Any]]:
    """Column-wise view (``image``, ``question``, ``candidate_embeddings``,
    ``is_positive``, ``full_scores``, ``query_id``, and ``index_positive`` when built with
    an index) for a TRL dataset / reward kwargs."""
    columns: dict[str, list[Any]] = {
        "query_id": [e.query_id for e in examples],
        "image": [e.image for e in examples],
        "question": [e.question for e in examples],
        "candidate_embeddings": [e.candidate_embeddings for e in examples],
        "is_positive": [list(e.is_positive) for e in examples],
        "full_scores": [list(e.full_scores) for e in examples],
    }
    if any(e.index_positive for e in examples):
        columns["index_positive"] = [list(e.index_positive) for e in examples]
    return columns
