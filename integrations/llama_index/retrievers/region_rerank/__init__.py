"""region-rerank for LlamaIndex: ``RegionRetriever``, a retriever whose image search uses the
crop decision, followed by the re-rank with the same decision.

Importing this package needs llama-index-core (``pip install "region-rerank[llamaindex]"``);
see :mod:`llama_index.retrievers.region_rerank.base` for the usage snippet.
"""

from llama_index.retrievers.region_rerank.base import RegionRetriever

__all__ = ["RegionRetriever"]
