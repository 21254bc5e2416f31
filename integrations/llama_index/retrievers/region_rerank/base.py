"""LlamaIndex retriever: crop the query image where the question points, search the nodes
with that view, then re-rank the hits with the same decision.

Install with ``pip install "region-rerank[llamaindex]"``, then::

    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.postprocessor.region_rerank import ImageQueryBundle
    from llama_index.retrievers.region_rerank import RegionRetriever

    retriever = RegionRetriever(nodes, reranker=CroppedReranker("grounding", "clip"), top_n=5)
    engine = RetrieverQueryEngine.from_args(retriever)
    response = engine.query(ImageQueryBundle("When was this bridge built?", image="street.jpg"))

The nodes (``ImageNode`` / ``TextNode``, images and text read as the postprocessor reads
them) are embedded once by the reranker's scorer into a
:class:`region_rerank.CandidateIndex` (or pass ``index=`` built earlier over the same node
ids). Each query is decided once by the reranker's cropper; the index is searched with the
chosen view (``mode="view"``), the whole image (``"full"``) or both fused (``"fused"``), and
the ``similarity_top_k`` hits are re-ranked by :class:`region_rerank.RegionRetriever`.
Returned nodes are copies carrying the decision in metadata hidden from the LLM.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from region_rerank._optional import install_hint

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle
except ImportError as exc:  # the pattern of the llama-index integration packages
    raise ImportError(
        f"RegionRetriever needs llama-index-core: {install_hint('llama_index')}"
    ) from exc

from llama_index.postprocessor.region_rerank.base import (
    node_candidate,
    query_from_bundle,
    scored_node,
)

from region_rerank.adapter_support import check_top_n
from region_rerank.errors import ConfigError
from region_rerank.index import CandidateIndex
from region_rerank.reranker import CroppedReranker
from region_rerank.retrieval import RegionRetriever as CoreRetriever

__all__ = ["RegionRetriever"]

logger = logging.getLogger(__name__)


class RegionRetriever(BaseRetriever):
    """Region-aware retrieval over LlamaIndex nodes.

    Args:
        nodes: The nodes to search (their ids must be unique).
        reranker: The :class:`region_rerank.CroppedReranker` whose cropper decides and whose
            scorer embeds the nodes and the query views.
        mode: ``"view"``, ``"full"`` or ``"fused"`` (see :mod:`region_rerank.retrieval`).
        similarity_top_k: Hits of the first stage (the pool that is re-ranked).
        top_n: Nodes returned after re-ranking (``None``: the whole pool).
        index: A prebuilt index over the same node ids (skips embedding the nodes).
        keep_retrieval_score: Store the first-stage score in ``metadata["retrieval_score"]``.
        allow_urls: Read ``ImageNode.image_url`` images (network access).
        callback_manager: LlamaIndex callbacks.

    Raises:
        ConfigError: Bad sizes or mode, duplicate node ids, or an index that does not hold
            the nodes.
    """

    def __init__(
        self,
        nodes: Iterable[BaseNode],
        reranker: CroppedReranker,
        *,
        mode: str = "view",
        similarity_top_k: int = 20,
        top_n: int | None = 5,
        index: CandidateIndex | None = None,
        keep_retrieval_score: bool = False,
        allow_urls: bool = False,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        check_top_n("top_n", top_n)
        check_top_n("similarity_top_k", similarity_top_k, low=1)
        super().__init__(callback_manager=callback_manager)
        self._nodes: dict[str, BaseNode] = {}
        for node in nodes:
            if node.node_id in self._nodes:
                raise ConfigError(f"duplicate node id {node.node_id!r}")
            self._nodes[node.node_id] = node
        kb = {nid: node_candidate(n, None, allow_urls) for nid, n in self._nodes.items()}
        if index is None:
            index = CandidateIndex.build(kb.values(), reranker.scorer, total=len(kb))
        elif set(index.ids) - set(kb):
            raise ConfigError("the index holds ids that are not among the nodes")
        self._core = CoreRetriever(reranker, index, kb, mode=mode, k=similarity_top_k)
        self.top_n = top_n
        self.keep_retrieval_score = keep_retrieval_score

    @property
    def retriever(self) -> CoreRetriever:
        """The core :class:`region_rerank.RegionRetriever` doing the work."""
        return self._core

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_from_bundle(query_bundle, "RegionRetriever")
        result = self._core.retrieve(query, top_n=self.top_n)
        out = []
        for s in result.ranking:
            original = NodeWithScore(
                node=self._nodes[s.candidate.id], score=s.candidate.retrieval_score
            )
            out.append(scored_node(original, s.score, result, self.keep_retrieval_score))
        return out

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # CPU/GPU bound: a worker thread keeps the event loop free.
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def __repr__(self) -> Any:
        return f"RegionRetriever(mode={self._core.mode!r}, nodes={len(self._nodes)})"
