"""Region-aware retrieval: one crop decision drives the first-stage search and the re-rank.

A re-ranker can only re-order the pool the first stage returned; when that pool was found
with the whole query image, a positive that the clutter pushed out of the top ``k`` is
lost for good. The crop decision needs no candidates, so :class:`RegionRetriever` makes it
once per query and uses it twice:

1. decode the query image and decide (the reranker's cropper, or decisions you pass);
2. search a :class:`~region_rerank.index.CandidateIndex` with the chosen view
   (``mode="view"``), the full image (``"full"``, what pipelines do today) or both, fused by
   reciprocal rank (``"fused"``);
3. re-rank the retrieved pool with the *same* decision and decoded image through the
   :class:`~region_rerank.reranker.CroppedReranker` (no second decision, no second decode).

Example:
    >>> from region_rerank import CandidateIndex, Candidate, CroppedReranker, Query
    >>> from region_rerank.retrieval import RegionRetriever
    >>> from region_rerank.testing import FakeCropper, FakeScorer
    >>> from PIL import Image
    >>> kb = {c: Candidate(c, f"a {c} thing") for c in ("red", "blue", "green")}
    >>> rr = CroppedReranker(FakeCropper(), FakeScorer())
    >>> index = CandidateIndex.build(kb.values(), rr.scorer, progress=False)
    >>> retriever = RegionRetriever(rr, index, kb, k=2)
    >>> result = retriever.retrieve(Query(Image.new("RGB", (8, 8), "blue"), "what is it?"))
    >>> len(result.ranking)
    2
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from region_rerank._validate import check_choice, check_int, check_range, check_rerank_inputs
from region_rerank.errors import ConfigError
from region_rerank.reranker import CroppedReranker, _load, _Prepared
from region_rerank.types import Candidate, CropDecision, Query, RerankResult
from region_rerank.views import embed_views

if TYPE_CHECKING:
    import torch

__all__ = ["RETRIEVE_MODES", "RegionRetriever", "SearchIndex", "reciprocal_rank_fusion"]

logger = logging.getLogger(__name__)

#: First-stage query views: the full image, the decision's view, or both fused.
RETRIEVE_MODES: tuple[str, ...] = ("full", "view", "fused")
Hits = list[tuple[str, float]]


@runtime_checkable
class SearchIndex(Protocol):
    """What :class:`RegionRetriever` searches: a :class:`~region_rerank.index.CandidateIndex`,
    or an adapter over another store (e.g. a LangChain vector store)."""

    def search(
        self, queries: torch.Tensor, k: int, *, scorer: Any = None, use_faiss: bool | str = False
    ) -> list[Hits]:
        """For each query embedding, the top ``k`` ``(id, score)``, best first."""
        ...

    def check_scorer(self, scorer: Any) -> None:
        """Raise ``ConfigError`` when ``scorer`` did not make the stored embeddings."""
        ...


def reciprocal_rank_fusion(lists: Sequence[Hits], k: int, constant: int = 60) -> Hits:
    """Fuse ranked lists by reciprocal rank: ``score(id) = sum 1 / (constant + rank)``
    (rank from 1); the top ``k``, ties broken by first appearance."""
    scores: dict[str, float] = {}
    for hits in lists:
        for rank, (cid, _) in enumerate(hits, start=1):
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (constant + rank)
    order = sorted(scores, key=lambda c: -scores[c])  # stable: first appearance wins ties
    return [(c, scores[c]) for c in order[:k]]


class RegionRetriever:
    """Search an index with the crop decision's view, then re-rank with the same decision.

    Args:
        reranker: Its cropper decides, its scorer embeds the query views and re-scores
            (it must be the scorer that built ``index``).
        index: What to search: a :class:`~region_rerank.index.CandidateIndex` or any
            :class:`SearchIndex`.
        kb: The indexed entries: ``id -> Candidate`` or a function returning the
            candidate for an id (retrieved candidates are copies carrying the first-stage
            score as ``retrieval_score``; your objects are not changed).
        mode: ``"view"`` (search with the decision's view: the crop, or the full image
            when the decision is FULL), ``"full"`` (the whole image) or ``"fused"``
            (reciprocal-rank fusion of both searches).
        k: Pool size of the first stage.
        fusion_constant: The constant of reciprocal-rank fusion (``"fused"``).
        use_faiss: Passed to :meth:`CandidateIndex.search`.
        faiss_index: The FAISS index type of a :class:`CandidateIndex` search (e.g. the
            approximate ``"HNSW32,Flat"``; with ``use_faiss``).
        faiss_params: Its search parameters (e.g. ``{"efSearch": 128}``).

    Raises:
        ConfigError: A bad mode or size, an index built by another scorer, or FAISS options
            for an index that is not a :class:`CandidateIndex`.
    """

    def __init__(
        self,
        reranker: CroppedReranker,
        index: SearchIndex,
        kb: Mapping[str, Candidate] | Callable[[str], Candidate],
        *,
        mode: str = "view",
        k: int = 20,
        fusion_constant: int = 60,
        use_faiss: bool | str = False,
        faiss_index: str = "Flat",
        faiss_params: Mapping[str, float] | None = None,
    ) -> None:
        from region_rerank.index import CandidateIndex

        check_choice("mode", mode, RETRIEVE_MODES)
        check_range("k", k, 1)
        check_range("fusion_constant", fusion_constant, 0)
        if not isinstance(index, SearchIndex):
            raise ConfigError(f"index must have search() and check_scorer(); got {index!r}")
        self.reranker = reranker
        self.index = index
        self._lookup = kb.__getitem__ if isinstance(kb, Mapping) else kb
        self.mode = mode
        self.k = int(k)
        self.fusion_constant = int(fusion_constant)
        self.use_faiss = use_faiss
        self._faiss_options: dict[str, Any] = {}
        if faiss_index != "Flat" or faiss_params:
            if not isinstance(index, CandidateIndex):
                raise ConfigError(
                    f"faiss_index / faiss_params apply to a CandidateIndex, not {index!r}"
                )
            self._faiss_options = {"faiss_index": faiss_index, "faiss_params": faiss_params}

    # ------------------------------------------------------------------ public
    def retrieve(
        self, query: Query, top_n: int | None = None, *, decision: CropDecision | None = None
    ) -> RerankResult:
        """Retrieve and re-rank for one query (see :meth:`retrieve_batch`)."""
        decisions = None if decision is None else [decision]
        return self.retrieve_batch([query], top_n, decisions=decisions)[0]

    def retrieve_batch(
        self,
        queries: Sequence[Query],
        top_n: int | None = None,
        *,
        decisions: Sequence[CropDecision] | None = None,
    ) -> list[RerankResult]:
        """Decide once per query, search, re-rank; batched across queries.

        Args:
            queries: The queries.
            top_n: Results kept after re-ranking (default: the reranker's ``top_n``).
            decisions: Use these decisions instead of the cropper's (e.g. an oracle box).

        Returns:
            One :class:`RerankResult` per query, holding the decision. With the
            reranker's ``on_error="fallback"`` a query that fails is retried alone and,
            if it fails again, returns an empty ranking with ``fallback=True`` and the
            error (no candidate was handed in, so none is lost); with ``"raise"`` the
            error propagates.
        """
        rr = self.reranker
        queries = list(queries)
        queries, _ = check_rerank_inputs(queries, [[] for _ in queries], decisions)
        top = rr.config.top_n if top_n is None else top_n
        if top is not None:
            check_int("top_n", top, 0)
        if not queries:
            return []
        self.index.check_scorer(rr.scorer)
        _load(rr.scorer)
        if decisions is None:
            _load(rr.cropper)
        if rr.config.on_error == "raise":
            return self._run(queries, top, decisions)
        try:
            return self._run(queries, top, decisions)
        except Exception as exc:
            logger.warning("retrieval of %d queries failed (%s); one by one", len(queries), exc)
        out = []
        for i, query in enumerate(queries):
            one = None if decisions is None else [decisions[i]]
            try:
                out.extend(self._run([query], top, one))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                logger.warning("query %r: retrieval failed: %s", query.id, error)
                decision = CropDecision.full(source="fallback", reason=error)
                out.append(RerankResult(query.id, (), decision, {}, fallback=True, error=error))
        return out

    def search_batch(
        self, queries: Sequence[Query], *, decisions: Sequence[CropDecision] | None = None
    ) -> tuple[list[CropDecision], list[Hits]]:
        """The first stage alone: each query's decision and its top-``k`` ``(id, score)``
        (errors propagate)."""
        queries, _ = check_rerank_inputs(list(queries), [[] for _ in queries], decisions)
        self.index.check_scorer(self.reranker.scorer)
        prep = self.reranker._prepare(queries, decisions)
        return prep.decisions, self._search(prep)

    # ------------------------------------------------------------------ internals
    def _views(self, decision: CropDecision) -> list[Any]:
        if self.mode == "full" or decision.box is None:
            return [None]
        return [decision.box] if self.mode == "view" else [None, decision.box]

    def _search(self, prep: _Prepared) -> list[Hits]:
        import torch

        rr = self.reranker
        views = [self._views(d) for d in prep.decisions]
        emb = embed_views(
            rr.scorer,
            prep.images,
            views,
            tensor_crop=rr.config.tensor_crop,
            batch_size=rr.config.batch_size,
        )
        flat = torch.cat([e.float().cpu() for e in emb], 0)
        hits = self.index.search(
            flat, self.k, scorer=rr.scorer, use_faiss=self.use_faiss, **self._faiss_options
        )
        out: list[Hits] = []
        start = 0
        for boxes in views:
            lists = hits[start : start + len(boxes)]
            start += len(boxes)
            if len(lists) == 1:
                out.append(lists[0])
            else:
                out.append(reciprocal_rank_fusion(lists, self.k, self.fusion_constant))
        return out

    def _pool(self, hits: Hits) -> list[Candidate]:
        pool = []
        for cid, score in hits:
            try:
                cand = self._lookup(cid)
            except KeyError as exc:
                raise ConfigError(
                    f"the index returned {cid!r}, which the kb does not hold"
                ) from exc
            pool.append(replace(cand, retrieval_score=float(score)))
        return pool

    def _run(
        self, queries: list[Query], top_n: int | None, decisions: Sequence[CropDecision] | None
    ) -> list[RerankResult]:
        prep = self.reranker._prepare(queries, decisions)
        pools = [self._pool(h) for h in self._search(prep)]
        return self.reranker._finish(prep, pools, top_n)
