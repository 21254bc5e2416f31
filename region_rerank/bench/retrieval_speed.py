"""The region-aware retrieval figures of ``region-rerank bench speed``.

* ``retrieve_view_over_full``: one :class:`~region_rerank.retrieval.RegionRetriever` batch
  searching an index of the workload's KB with each query's chosen view and re-ranking the
  hits, over the same with the full image (same light cropper, same decisions, k=20); the
  median of interleaved paired runs.
* ``search_10x_kb``: the time of a 16-query index search over a 10x larger KB (random
  normalised embeddings of the demo scorer's size), per backend: torch (exact), and when
  FAISS is installed ``faiss`` (exact flat index) and ``faiss_hnsw`` (the approximate
  ``HNSW32,Flat`` with ``efSearch`` 64). FAISS indexes are built before the timed searches
  (as :class:`~region_rerank.index.CandidateIndex` keeps them). An exact search reads every
  vector, so 10 is its expected growth; the graph search grows sub-linearly
  (``hnsw_search_10x_kb``). Each query is a noisy copy of one KB entry (cosine about 0.7
  with it), and ``search_kb_hnsw`` reports the share of those entries HNSW still returns in
  its top 20 at the large size (exact search: all), with its build time. Random vectors
  have no other structure, so the rest of the top 20 is a near-tie that no approximate index
  reproduces; real embeddings are clustered.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from region_rerank.bench.timing import median_seconds, paired_medians

if TYPE_CHECKING:
    from region_rerank.bench.figures import Bench

__all__ = ["retrieval_figure"]

#: KB sizes of the search-growth figure (the second is 10x the first).
SEARCH_SIZES = (20_000, 200_000)
#: The approximate FAISS index of the growth figure, and its search parameters.
HNSW_INDEX, HNSW_PARAMS = "HNSW32,Flat", {"efSearch": 64}


def _search_growth(repeats: int, quick: bool) -> dict[str, Any]:
    import time

    import torch

    from region_rerank.index import CandidateIndex, faiss_available

    small, large = (2_000, 20_000) if quick else SEARCH_SIZES
    gen = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(large, 384, generator=gen), dim=1)
    planted = torch.randperm(small, generator=gen)[:16]  # in both KB sizes
    noise = torch.randn(16, 384, generator=gen) / 384**0.5
    queries = torch.nn.functional.normalize(emb[planted] + noise, dim=1)
    ids = [f"e{i}" for i in range(large)]
    backends: dict[str, dict[str, Any]] = {"torch": {"use_faiss": False}}
    if faiss_available():
        backends["faiss"] = {"use_faiss": True}
        backends["faiss_hnsw"] = {
            "use_faiss": True,
            "faiss_index": HNSW_INDEX,
            "faiss_params": HNSW_PARAMS,
        }
    growth: dict[str, float] = {}
    hnsw: dict[str, Any] = {}
    for name, options in backends.items():
        times = []
        for n in (small, large):
            index = CandidateIndex(ids[:n], emb[:n])
            search = partial(index.search, queries, 20, **options)
            start = time.perf_counter()
            hits = search()  # builds a FAISS index; untimed like a warm-up
            build = time.perf_counter() - start
            times.append(median_seconds(search, repeats, warmup=0))
        growth[name] = times[1] / times[0]
        if name == "faiss_hnsw":
            found = [ids[int(p)] in {h for h, _ in row} for p, row in zip(planted, hits)]
            hnsw = {
                "index": HNSW_INDEX,
                **HNSW_PARAMS,
                "entries": large,
                "planted_recall_at_20": sum(found) / len(found),
                "build_seconds": build,
            }
    out: dict[str, Any] = {"search_10x_kb": growth}
    if hnsw:
        out["hnsw_search_10x_kb"] = growth["faiss_hnsw"]
        out["search_kb_hnsw"] = hnsw
    return out


def retrieval_figure(b: Bench) -> dict[str, Any]:
    """``retrieve_view_over_full`` and the search-growth figures (see the module docstring)."""
    from region_rerank.index import CandidateIndex
    from region_rerank.retrieval import RegionRetriever

    rr = b.reranker("proposal")
    kb = {c.id: c for c in b.world.kb}
    index = CandidateIndex.build(kb.values(), rr.scorer, cache=rr.cache, progress=False)
    queries = b.world.queries[: b.settings.batch_queries]
    view = RegionRetriever(rr, index, kb, mode="view", k=20)
    full = RegionRetriever(rr, index, kb, mode="full", k=20)
    t_view, t_full, ratio = paired_medians(
        partial(view.retrieve_batch, queries),
        partial(full.retrieve_batch, queries),
        b.settings.repeats,
    )
    quick = b.settings.repeats <= 1
    return {
        "retrieve_view_over_full": ratio,
        "retrieve_seconds": {"view": t_view, "full": t_full, "queries": len(queries)},
        **_search_growth(b.settings.repeats, quick),
    }
