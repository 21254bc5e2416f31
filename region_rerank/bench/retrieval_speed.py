"""The region-aware retrieval figures of ``region-rerank bench speed``.

* ``retrieve_view_over_full``: one :class:`~region_rerank.retrieval.RegionRetriever` batch
  searching an index of the workload's KB with each query's chosen view and re-ranking the
  hits, over the same with the full image (same light cropper, same decisions, k=20); the
  median of interleaved paired runs.
* ``search_10x_kb``: the time of an exact index search over a 10x larger KB (random
  normalised embeddings of the demo scorer's size), per backend: torch, and FAISS flat
  when installed. A flat search reads every vector, so linear growth (10) is the expected
  value; sub-linear growth needs an approximate FAISS index (see the retrieval docs).
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


def _search_growth(repeats: int, quick: bool) -> dict[str, float]:
    import torch

    from region_rerank.index import CandidateIndex, faiss_available

    small, large = (2_000, 20_000) if quick else SEARCH_SIZES
    gen = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(large, 384, generator=gen), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(16, 384, generator=gen), dim=1)
    ids = [f"e{i}" for i in range(large)]
    out: dict[str, float] = {}
    backends = {"torch": False, **({"faiss": True} if faiss_available() else {})}
    for name, use_faiss in backends.items():
        times = []
        for n in (small, large):
            index = CandidateIndex(ids[:n], emb[:n])
            search = partial(index.search, queries, 20, use_faiss=use_faiss)
            times.append(median_seconds(search, repeats))
        out[name] = times[1] / times[0]
    return out


def retrieval_figure(b: Bench) -> dict[str, Any]:
    """``retrieve_view_over_full`` and ``search_10x_kb`` (see the module docstring)."""
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
        "search_10x_kb": _search_growth(b.settings.repeats, quick),
    }
