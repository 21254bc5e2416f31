"""LangChain integration of region-rerank: a document compressor and two retrievers.

``from langchain_region_rerank import RegionRerankCompressor, RegionRerankRetriever``
(re-rank another retriever's pool) and ``RegionSearchRetriever`` with ``ScorerEmbeddings``
(search a vector store with the crop decision's view, then re-rank;
:mod:`langchain_region_rerank.region_search`)
(needs ``pip install "region-rerank[langchain]"``; a missing langchain-core raises an
``ImportError`` naming the class and that command). See
:mod:`langchain_region_rerank.compressor` for the snippet to copy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "MissingQueryImageError",
    "RegionRerankCompressor",
    "RegionRerankRetriever",
    "RegionSearchRetriever",
    "ScorerEmbeddings",
]

_EXPORTS = {
    "MissingQueryImageError": "langchain_region_rerank.compressor",
    "RegionRerankCompressor": "langchain_region_rerank.compressor",
    "RegionRerankRetriever": "langchain_region_rerank.retriever",
    "RegionSearchRetriever": "langchain_region_rerank.region_search",
    "ScorerEmbeddings": "langchain_region_rerank.region_search",
}

if TYPE_CHECKING:
    from langchain_region_rerank.compressor import MissingQueryImageError, RegionRerankCompressor
    from langchain_region_rerank.region_search import RegionSearchRetriever, ScorerEmbeddings
    from langchain_region_rerank.retriever import RegionRerankRetriever


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'langchain_region_rerank' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
