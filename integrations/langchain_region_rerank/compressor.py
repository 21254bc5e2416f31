"""LangChain document compressor: re-rank retrieved Documents against a cropped query image.

Usage (``pip install "region-rerank[langchain]"``)::

    from langchain_region_rerank import RegionRerankCompressor, RegionRerankRetriever
    from region_rerank import CroppedReranker

    reranker = CroppedReranker(cropper="grounding", scorer="clip")  # or cropper="vlm:MODEL"
    base = vector_store.as_retriever(search_kwargs={"k": 20})     # any LangChain retriever
    retriever = RegionRerankRetriever(base_retriever=base, reranker=reranker, k=5)
    docs = retriever.invoke("When was this bridge built?", image="street.jpg")
    docs[0].metadata["relevance_score"], docs[0].metadata["region_rerank_decision"]
    # or, as a compressor (e.g. in langchain-classic's ContextualCompressionRetriever):
    compressor = RegionRerankCompressor(reranker=reranker, top_n=5).with_query_image("street.jpg")

Document images are read from ``metadata["image"]`` (path, data URI, base64 or bytes, or a
list of them) or ``metadata["image_path"]``; documents without one are scored by their text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from region_rerank._optional import require

require("langchain_core", feature="RegionRerankCompressor")

from langchain_core.callbacks import Callbacks  # noqa: E402
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.runnables.config import run_in_executor  # noqa: E402
from pydantic import ConfigDict, Field, model_validator  # noqa: E402

from region_rerank.adapter_support import (  # noqa: E402
    DECISION_KEY,
    RELEVANCE_SCORE_KEY,
    check_top_n,
    resolve_reranker,
)
from region_rerank.errors import MissingQueryImageError  # noqa: E402
from region_rerank.model_options import ModelOptions  # noqa: E402
from region_rerank.reranker import CroppedReranker  # noqa: E402
from region_rerank.types import Candidate, Query  # noqa: E402

__all__ = ["RegionRerankCompressor", "MissingQueryImageError"]

logger = logging.getLogger(__name__)


def _is_empty(value: Any) -> bool:
    return isinstance(value, (str, bytes, list, tuple)) and len(value) == 0


def document_candidate(cid: str, doc: Document, image_keys: Sequence[str]) -> Candidate:
    """The region-rerank candidate of a Document: its first image found under
    ``image_keys`` in its metadata, and its text."""
    found = (doc.metadata.get(k) for k in image_keys)
    images = next((v for v in found if v is not None and not _is_empty(v)), ())
    text = doc.page_content if doc.page_content.strip() else None
    return Candidate(cid, text=text, images=images)


def query_image_or_raise(bound: Any, given: Any, who: str) -> Any:
    """The query image of a retriever call: ``given``, else the bound one.

    Raises:
        MissingQueryImageError: Neither is set.
    """
    image = bound if given is None else given
    if image is None:
        raise MissingQueryImageError(
            f"{who} has no query image: call "
            "retriever.invoke(question, image=...) or bind one with with_query_image(image)"
        )
    return image


def annotated_copy(doc: Document, score: float, decision: dict[str, Any]) -> Document:
    """A copy of ``doc`` whose new metadata dict adds the score and the crop decision."""
    meta = dict(doc.metadata)  # a new dict: the caller's Document stays untouched
    meta[RELEVANCE_SCORE_KEY] = score
    meta[DECISION_KEY] = decision
    return doc.model_copy(update={"metadata": meta})


class RegionRerankCompressor(BaseDocumentCompressor):
    """Re-rank Documents with a :class:`~region_rerank.CroppedReranker` (crop, then score).

    The caller's Documents are never modified: each returned Document is a copy with a new
    metadata dict (the caller's values are shared, never deep-copied: sockets, locks and
    handles are fine) that gains ``relevance_score`` and ``region_rerank_decision``
    (:meth:`region_rerank.CropDecision.to_dict`). Documents may come as any iterable.
    ``top_n`` is validated like the core (an int >= 0 or None; no coercion), and a missing
    query image raises :class:`~region_rerank.errors.MissingQueryImageError`, also for an
    empty pool.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    reranker: CroppedReranker | None = Field(
        default=None, description="The core reranker; built from `cropper`/`scorer` if None."
    )
    cropper: str | None = Field(default=None, description="Cropper spec, e.g. 'grounding'.")
    scorer: str | None = Field(default=None, description="Scorer spec, e.g. 'clip:MODEL'.")
    model_options: ModelOptions | None = Field(
        default=None, description="How the components built from specs load their models."
    )
    top_n: int | None = Field(default=3, description="Documents kept (None = all).")
    on_error: str | None = Field(
        default=None,
        description="'fallback' or 'raise' for a reranker built from specs (None: the "
        "reranker's own).",
    )
    query_image: Any = Field(
        default=None, repr=False, description="Query image; bind with `with_query_image`."
    )
    image_keys: tuple[str, ...] = Field(
        default=("image", "image_path"), description="Metadata keys holding document images."
    )

    def __init__(self, **data: Any) -> None:
        check_top_n("top_n", data.get("top_n"))  # before pydantic, which would coerce
        super().__init__(**data)

    @model_validator(mode="after")
    def _build_reranker(self) -> RegionRerankCompressor:
        self.reranker = resolve_reranker(
            self.reranker,
            self.cropper,
            self.scorer,
            on_error=self.on_error,
            model_options=self.model_options,
        )
        return self

    def with_query_image(self, image: Any) -> RegionRerankCompressor:
        """Return a copy bound to ``image`` (this compressor is unchanged; thread-safe).

        Args:
            image: Anything :func:`region_rerank.load_image` accepts (PIL image, path,
                bytes, base64 or data URI, array).
        """
        return self.model_copy(update={"query_image": image})

    def _candidate(self, index: int, doc: Document) -> Candidate:
        return document_candidate(str(index), doc, self.image_keys)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Re-rank ``documents`` for ``query`` and the bound query image, best first.

        Args:
            documents: The retrieved Documents.
            query: The question.
            callbacks: Unused (accepted for the LangChain interface).

        Returns:
            Copies of the best ``top_n`` Documents with the score and crop decision.

        Raises:
            MissingQueryImageError: No query image is bound (see :meth:`with_query_image`).
        """
        documents = list(documents)  # generators and iterators: read once, never dropped
        if self.query_image is None:
            raise MissingQueryImageError(
                "RegionRerankCompressor has no query image: use "
                "compressor.with_query_image(image) (or RegionRerankRetriever.invoke(q, image=...))"
            )
        if not documents:
            return []
        assert self.reranker is not None  # set by the validator
        pool = [self._candidate(i, doc) for i, doc in enumerate(documents)]
        result = self.reranker.rerank(Query(self.query_image, query), pool, top_n=self.top_n)
        logger.debug("reranked %d documents, decision %s", len(pool), result.decision)
        decision = result.decision.to_dict()
        return [
            annotated_copy(documents[scored.input_index], scored.score, decision)
            for scored in result.ranking
        ]

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`, run in a worker thread (the loop stays free)."""
        return await run_in_executor(None, self.compress_documents, documents, query, callbacks)
