"""region-rerank for LlamaIndex: ``RegionRerankPostprocessor`` and ``ImageQueryBundle``.

Importing this package needs llama-index-core (``pip install "region-rerank[llamaindex]"``);
see :mod:`llama_index.postprocessor.region_rerank.base` for the usage snippet.
"""

from llama_index.postprocessor.region_rerank.base import (
    BOX_KEY,
    DECISION_KEY,
    FALLBACK_KEY,
    RETRIEVAL_SCORE_KEY,
    ImageQueryBundle,
    RegionRerankPostprocessor,
)

__all__ = [
    "RegionRerankPostprocessor",
    "ImageQueryBundle",
    "DECISION_KEY",
    "BOX_KEY",
    "FALLBACK_KEY",
    "RETRIEVAL_SCORE_KEY",
]
