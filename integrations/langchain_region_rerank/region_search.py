"""LangChain region-aware retrieval: search a vector store with the crop decision's view,
then re-rank the hits with the same decision.

The vector store must hold embeddings made by the reranker's scorer (the query view is
embedded by that scorer and searched by vector): index your documents with
:class:`ScorerEmbeddings` (text), or add vectors you computed with the scorer. Any
``VectorStore`` that supports ``similarity_search_with_score_by_vector`` (or at least
``similarity_search_by_vector``) works::

    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_region_rerank import RegionSearchRetriever, ScorerEmbeddings
    from region_rerank import CroppedReranker

    reranker = CroppedReranker("grounding", "clip")
    store = InMemoryVectorStore(ScorerEmbeddings(reranker.scorer))
    store.add_documents(documents)
    retriever = RegionSearchRetriever(vector_store=store, reranker=reranker, fetch_k=20, k=5)
    docs = retriever.invoke("When was this bridge built?", image="street.jpg")
"""

from __future__ import annotations

from typing import Any

from region_rerank._optional import require

require("langchain_core", feature="RegionSearchRetriever")

from langchain_core.callbacks import CallbackManagerForRetrieverRun  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.vectorstores import VectorStore  # noqa: E402
from pydantic import ConfigDict, Field  # noqa: E402

from langchain_region_rerank.compressor import (  # noqa: E402
    annotated_copy,
    document_candidate,
    query_image_or_raise,
)
from region_rerank.adapter_support import (  # noqa: E402
    check_top_n,
)
from region_rerank.errors import ConfigError  # noqa: E402
from region_rerank.reranker import CroppedReranker  # noqa: E402
from region_rerank.retrieval import RETRIEVE_MODES, RegionRetriever  # noqa: E402
from region_rerank.types import Candidate, Query  # noqa: E402

__all__ = ["RegionSearchRetriever", "ScorerEmbeddings", "VectorStoreSearch"]


class ScorerEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` over a region-rerank scorer's text tower, so a vector store
    holds vectors of the same space as the query views (e.g. CLIP text embeddings)."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed document texts with the scorer."""
        if not texts:
            return []
        return [[float(x) for x in row] for row in self.scorer.embed_texts(texts).tolist()]

    def embed_query(self, text: str) -> list[float]:
        """Embed a text query with the scorer."""
        return self.embed_documents([text])[0]


class VectorStoreSearch:
    """A :class:`region_rerank.retrieval.SearchIndex` over a LangChain vector store.

    Documents found are kept (by id) so the retriever can hand back copies of them. Ids
    come from ``Document.id``, or from the document's position in the results when a store
    leaves it empty.
    """

    def __init__(self, store: VectorStore, image_keys: tuple[str, ...]) -> None:
        self.store = store
        self.image_keys = image_keys
        self.documents: dict[str, Document] = {}
        self.candidates: dict[str, Candidate] = {}

    def check_scorer(self, scorer: Any) -> None:
        """Nothing to check: a vector store does not record which model made its vectors."""

    def _hits(self, vector: list[float], k: int) -> list[tuple[Document, float]]:
        if hasattr(self.store, "similarity_search_with_score_by_vector"):
            found = self.store.similarity_search_with_score_by_vector(vector, k=k)
            return [(doc, float(score)) for doc, score in found]
        docs = self.store.similarity_search_by_vector(vector, k=k)
        return [(doc, 1.0 / (1 + rank)) for rank, doc in enumerate(docs)]  # rank-based

    def search(
        self, queries: Any, k: int, *, scorer: Any = None, use_faiss: bool | str = False
    ) -> list[list[tuple[str, float]]]:
        """For each query embedding row, the top ``k`` documents as ``(id, score)``."""
        out = []
        for row in queries.tolist():
            hits = []
            for position, (doc, score) in enumerate(self._hits(row, k)):
                key = doc.id or f"{position}:{hash(doc.page_content)}"
                self.documents[key] = doc
                self.candidates[key] = document_candidate(key, doc, self.image_keys)
                hits.append((key, score))
            out.append(hits)
        return out


class RegionSearchRetriever(BaseRetriever):
    """Search a vector store with the crop decision's view, re-rank with the same decision.

    ``invoke(question, image=...)`` passes the query image (or bind one with
    :meth:`with_query_image`). Returned documents are copies with ``relevance_score`` and
    ``region_rerank_decision`` in their metadata; the store's documents are not modified.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    vector_store: VectorStore = Field(description="Store holding the scorer's embeddings.")
    reranker: CroppedReranker = Field(description="Its cropper decides, its scorer embeds.")
    mode: str = Field(default="view", description="'view', 'full' or 'fused'.")
    fetch_k: int = Field(default=20, description="Hits of the first stage (>= 1).")
    k: int = Field(default=4, description="Documents returned after re-ranking (>= 1).")
    image_keys: tuple[str, ...] = Field(
        default=("image", "image_path"), description="Metadata keys holding document images."
    )
    query_image: Any = Field(default=None, repr=False, description="Default query image.")

    def __init__(self, **data: Any) -> None:
        check_top_n("k", data.get("k", 4), low=1)  # before pydantic, which would coerce
        check_top_n("fetch_k", data.get("fetch_k", 20), low=1)
        if data.get("mode", "view") not in RETRIEVE_MODES:
            raise ConfigError(f"mode={data.get('mode')!r}; allowed: {list(RETRIEVE_MODES)}")
        super().__init__(**data)

    def with_query_image(self, image: Any) -> RegionSearchRetriever:
        """Return a copy whose default query image is ``image`` (this one is unchanged)."""
        return self.model_copy(update={"query_image": image})

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        image: Any = None,
        k: int | None = None,
    ) -> list[Document]:
        image = query_image_or_raise(self.query_image, image, "RegionSearchRetriever")
        search = VectorStoreSearch(self.vector_store, self.image_keys)  # one per call
        core = RegionRetriever(
            self.reranker, search, search.candidates.__getitem__, mode=self.mode, k=self.fetch_k
        )
        result = core.retrieve(Query(image, query), top_n=self.k if k is None else k)
        decision = result.decision.to_dict()
        return [
            annotated_copy(search.documents[scored.candidate.id], scored.score, decision)
            for scored in result.ranking
        ]
