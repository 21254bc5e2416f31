"""LangChain retriever: a base retriever followed by region-cropped re-ranking.

``retriever.invoke(question, image=...)`` passes the query image per call (LangChain
forwards extra ``invoke`` keyword arguments to ``_get_relevant_documents`` because its
signature declares them); ``with_query_image(image)`` binds a default for chains that
call ``invoke(question)`` only. Other keyword arguments go to the base retriever.
"""

from __future__ import annotations

from typing import Any

from region_rerank._optional import require

require("langchain_core", feature="RegionRerankRetriever")

from langchain_core.callbacks import (  # noqa: E402
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document  # noqa: E402
from langchain_core.retrievers import BaseRetriever, RetrieverLike  # noqa: E402
from langchain_core.runnables import RunnableConfig  # noqa: E402
from pydantic import ConfigDict, Field  # noqa: E402

from langchain_region_rerank.compressor import (  # noqa: E402
    RegionRerankCompressor,
    query_image_or_raise,
)
from region_rerank.adapter_support import check_top_n  # noqa: E402
from region_rerank.reranker import CroppedReranker  # noqa: E402

__all__ = ["RegionRerankRetriever"]


class RegionRerankRetriever(BaseRetriever):
    """Retrieve with ``base_retriever``, then re-rank with a cropped query image; keep ``k``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_retriever: RetrieverLike = Field(description="First-stage retriever (the pool).")
    reranker: CroppedReranker = Field(description="The core reranker (cropper + scorer).")
    k: int = Field(default=4, description="Documents returned after re-ranking (>= 1).")
    query_image: Any = Field(
        default=None, repr=False, description="Default query image (see `with_query_image`)."
    )

    def __init__(self, **data: Any) -> None:
        check_top_n("k", data.get("k", 4), low=1)  # before pydantic, which would coerce
        super().__init__(**data)

    def with_query_image(self, image: Any) -> RegionRerankRetriever:
        """Return a copy whose default query image is ``image`` (this one is unchanged)."""
        return self.model_copy(update={"query_image": image})

    def _compressor(self, image: Any, k: int | None) -> RegionRerankCompressor:
        image = query_image_or_raise(self.query_image, image, "RegionRerankRetriever")
        return RegionRerankCompressor(
            reranker=self.reranker, top_n=self.k if k is None else k, query_image=image
        )

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        image: Any = None,
        k: int | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Retrieve the pool, re-rank it against ``image`` (or the bound one), keep ``k``."""
        compressor = self._compressor(image, k)  # fails on a missing image before retrieving
        config: RunnableConfig = {"callbacks": run_manager.get_child()}
        docs = self.base_retriever.invoke(query, config=config, **kwargs)
        return list(compressor.compress_documents(docs, query))

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        image: Any = None,
        k: int | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async twin of :meth:`_get_relevant_documents` (re-ranking runs in a thread)."""
        compressor = self._compressor(image, k)
        config: RunnableConfig = {"callbacks": run_manager.get_child()}
        docs = await self.base_retriever.ainvoke(query, config=config, **kwargs)
        return list(await compressor.acompress_documents(docs, query))
