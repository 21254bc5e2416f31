"""LlamaIndex node postprocessor: re-rank retrieved nodes against a cropped query image.

Install with ``pip install "region-rerank[llamaindex]"``, then::

    from llama_index.core import VectorStoreIndex
    from llama_index.postprocessor.region_rerank import ImageQueryBundle, RegionRerankPostprocessor

    rerank = RegionRerankPostprocessor(cropper="grounding", scorer="clip", top_n=5)
    # or: RegionRerankPostprocessor(reranker=CroppedReranker(cropper=..., scorer=...), top_n=5)
    engine = VectorStoreIndex(nodes).as_query_engine(
        similarity_top_k=20, node_postprocessors=[rerank]
    )
    response = engine.query(ImageQueryBundle("When was this bridge built?", image="street.jpg"))
    for n in response.source_nodes:
        print(n.score, n.node.metadata["region_rerank_decision"]["box"])

The query image comes from ``QueryBundle.image_path`` or from :class:`ImageQueryBundle`
(``image=`` takes anything :func:`region_rerank.load_image` decodes: PIL image, bytes, path,
base64, numpy array...). Candidate images come from ``ImageNode.image`` (base64),
``image_path``, ``image_url`` (only with ``allow_urls=True``) or an image
``metadata["file_path"]``; candidate text is ``node.get_content()``; nodes without an
image are scored by their text. All re-ranking logic lives in
:class:`region_rerank.CroppedReranker`.

LlamaIndex expects node scores to be set: the returned ``NodeWithScore`` objects are new and
wrap copies of the input nodes (with a new ``metadata`` dict), so the caller's nodes are
never modified.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import mimetypes
from dataclasses import dataclass
from typing import Any

from region_rerank._optional import install_hint

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import BaseNode, ImageNode, NodeWithScore, QueryBundle
except ImportError as exc:  # the pattern of the llama-index integration packages
    raise ImportError(
        f"RegionRerankPostprocessor needs llama-index-core: {install_hint('llama_index')}"
    ) from exc

from region_rerank.adapter_support import (
    BOX_KEY,
    DECISION_KEY,
    FALLBACK_KEY,
    HIDDEN_KEYS,
    RETRIEVAL_SCORE_KEY,
    check_top_n,
    resolve_reranker,
)
from region_rerank.errors import ConfigError, MissingQueryImageError
from region_rerank.images import ImageLoadOptions
from region_rerank.model_options import ModelOptions
from region_rerank.reranker import CroppedReranker, RerankerConfig
from region_rerank.types import Candidate, Query, RerankResult

__all__ = [
    "ImageQueryBundle",
    "RegionRerankPostprocessor",
    "DECISION_KEY",
    "BOX_KEY",
    "FALLBACK_KEY",
    "RETRIEVAL_SCORE_KEY",
]

logger = logging.getLogger(__name__)
dispatcher = get_dispatcher(__name__)


@dataclass
class ImageQueryBundle(QueryBundle):
    """A :class:`~llama_index.core.schema.QueryBundle` that carries the query image itself.

    Attributes:
        image: The query image: PIL image, ``bytes``, path, base64 / data URI, numpy array
            or torch tensor. Takes precedence over ``image_path``.
        query_id: Optional identifier, passed on as ``region_rerank.Query.id`` (logs,
            croppers keyed by query).

    Example:
        >>> ImageQueryBundle("What is the red object called?", image=pil_image)  # doctest: +SKIP
    """

    image: Any = None
    query_id: str | None = None


def _node_image(node: BaseNode, allow_urls: bool) -> Any:
    """The first image source of ``node``, or ``None`` (the node is then scored by text)."""
    if isinstance(node, ImageNode):
        if node.image:
            try:  # base64 per LlamaIndex; raw bytes are unambiguous for the core
                return base64.b64decode(node.image, validate=True)
            except (binascii.Error, ValueError):
                return node.image  # let the core report what is wrong with it
        if node.image_path:
            return node.image_path
        if node.image_url:
            if allow_urls:
                return node.image_url
            logger.debug("node %s: image_url ignored (allow_urls=False)", node.node_id)
    path = node.metadata.get("file_path")
    if isinstance(path, str) and (mimetypes.guess_type(path)[0] or "").startswith("image/"):
        return path
    return None


def _to_candidate(item: NodeWithScore, allow_urls: bool) -> Candidate:
    return node_candidate(item.node, item.score, allow_urls)


def query_from_bundle(query_bundle: QueryBundle | None, who: str) -> Query:
    """The region-rerank query of a LlamaIndex query bundle (question + image).

    Raises:
        MissingQueryImageError: No bundle, or a bundle without an image.
    """
    if query_bundle is None:
        raise MissingQueryImageError(f"{who} needs a query bundle with a question and an image")
    image = getattr(query_bundle, "image", None)
    if image is None:
        image = query_bundle.image_path
    if image is None:
        raise MissingQueryImageError(
            f"{who} needs a query image: pass "
            "QueryBundle(question, image_path=...) or ImageQueryBundle(question, image=...)"
        )
    query_id = getattr(query_bundle, "query_id", None)
    return Query(image=image, question=query_bundle.query_str, id=query_id)


def scored_node(
    original: NodeWithScore, score: float, result: RerankResult, keep_retrieval_score: bool
) -> NodeWithScore:
    """A new ``NodeWithScore`` wrapping a copy of ``original.node`` with the re-rank score and
    the decision in metadata hidden from the LLM and the embedder (the caller's node is not
    modified)."""
    decision = result.decision.to_dict()
    metadata = dict(original.node.metadata)
    metadata.update(
        {DECISION_KEY: decision, BOX_KEY: decision["box"], FALLBACK_KEY: result.fallback}
    )
    if keep_retrieval_score:
        metadata[RETRIEVAL_SCORE_KEY] = original.score
    node = original.node.model_copy(
        update={
            "metadata": metadata,
            "excluded_llm_metadata_keys": [
                *original.node.excluded_llm_metadata_keys,
                *HIDDEN_KEYS,
            ],
            "excluded_embed_metadata_keys": [
                *original.node.excluded_embed_metadata_keys,
                *HIDDEN_KEYS,
            ],
        }
    )
    return NodeWithScore(node=node, score=score)


def node_candidate(node: BaseNode, score: float | None, allow_urls: bool) -> Candidate:
    """The region-rerank candidate of a node (its image, its text, the retriever's score)."""
    image = _node_image(node, allow_urls)
    text = node.get_content()
    return Candidate(
        id=node.node_id,
        text=text if text.strip() else None,
        images=() if image is None else (image,),
        retrieval_score=score,
    )


class RegionRerankPostprocessor(BaseNodePostprocessor):
    """Re-rank nodes with region-rerank: crop the query image where the question points,
    then score every node against that view.

    Args:
        reranker: A ready :class:`region_rerank.CroppedReranker` (kept in a private
            attribute). Mutually exclusive with ``cropper`` / ``scorer``.
        cropper: Cropper spec for :func:`region_rerank.factory.build_cropper` when no
            reranker is given (default ``"grounding"``).
        scorer: Scorer spec for :func:`region_rerank.factory.build_scorer` when no reranker
            is given (default ``"clip"``). Models load on first use.
        top_n: Number of nodes returned, best first (``None`` keeps all).
        keep_retrieval_score: Store the first-stage score in ``metadata["retrieval_score"]``.
        allow_urls: Hand ``ImageNode.image_url`` to the reranker, which fetches it. Off by
            default: URLs are ignored and such nodes are scored by their text.
        model_options: How the components built from specs load their models
            (:class:`~region_rerank.ModelOptions`: device, dtype...).

    Raises:
        ValueError: Both a reranker and specs are given, or ``allow_urls=True`` with a
            reranker whose ``config.image_options.allow_urls`` is False.
    """

    top_n: int | None = Field(default=5, ge=0, description="Nodes returned (None = all).")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the retrieval score in metadata['retrieval_score']."
    )
    cropper: str | None = Field(
        default=None, description="Cropper spec used when no reranker is passed."
    )
    scorer: str | None = Field(
        default=None, description="Scorer spec used when no reranker is passed."
    )
    allow_urls: bool = Field(
        default=False, description="Fetch ImageNode.image_url images (network access)."
    )
    model_options: ModelOptions | None = Field(
        default=None, description="How the components built from specs load their models."
    )
    on_error: str | None = Field(
        default=None,
        description="'fallback' or 'raise' for a reranker built from specs (None: the "
        "reranker's own, 'fallback' by default).",
    )
    _reranker: CroppedReranker = PrivateAttr()

    def __init__(
        self,
        reranker: CroppedReranker | None = None,
        *,
        cropper: str | None = None,
        scorer: str | None = None,
        top_n: int | None = 5,
        keep_retrieval_score: bool = False,
        allow_urls: bool = False,
        model_options: ModelOptions | None = None,
        on_error: str | None = None,
        **kwargs: Any,
    ) -> None:
        check_top_n("top_n", top_n)  # before pydantic, which would coerce True, 1.0, "2"
        fields: dict[str, Any] = {
            "top_n": top_n,
            "keep_retrieval_score": keep_retrieval_score,
            "cropper": cropper,
            "scorer": scorer,
            "allow_urls": allow_urls,
            "model_options": model_options,
            "on_error": on_error,
        }
        super().__init__(**fields, **kwargs)
        config = RerankerConfig(image_options=ImageLoadOptions(allow_urls=allow_urls))
        reranker = resolve_reranker(
            reranker,
            cropper,
            scorer,
            on_error=on_error,
            config=config,
            model_options=model_options,
        )
        if allow_urls and not reranker.config.image_options.allow_urls:
            raise ConfigError(
                "allow_urls=True but the reranker refuses URLs: build it with "
                "RerankerConfig(image_options=ImageLoadOptions(allow_urls=True))"
            )
        self._reranker = reranker

    @classmethod
    def class_name(cls) -> str:
        return "RegionRerankPostprocessor"

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the fields and the reranker itself (LlamaIndex's own pickling re-runs
        ``__init__`` from the fields, which would build a default reranker instead).

        Raises:
            ConfigError: The reranker holds a component that cannot be pickled.
        """
        return {"fields": dict(self.__dict__), "reranker": self._reranker}

    def __setstate__(self, state: dict[str, Any]) -> None:
        fields = dict(state["fields"])
        specs = {"cropper": fields.pop("cropper", None), "scorer": fields.pop("scorer", None)}
        fields.pop("callback_manager", None)
        RegionRerankPostprocessor.__init__(self, reranker=state["reranker"], **fields)
        self.__dict__.update(specs)

    @property
    def reranker(self) -> CroppedReranker:
        """The :class:`region_rerank.CroppedReranker` doing the work."""
        return self._reranker

    def _model_name(self) -> str:
        cropper, scorer = self._reranker.cropper, self._reranker.scorer
        names = (getattr(c, "name", "") or type(c).__name__ for c in (cropper, scorer))
        return "region-rerank:{}+{}".format(*names)

    def _query(self, query_bundle: QueryBundle | None) -> Query:
        return query_from_bundle(query_bundle, "RegionRerankPostprocessor")

    def _to_nodes(self, nodes: list[NodeWithScore], result: RerankResult) -> list[NodeWithScore]:
        return [
            scored_node(nodes[s.input_index], s.score, result, self.keep_retrieval_score)
            for s in result.ranking
        ]

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query = self._query(query_bundle)  # a missing image raises, with or without nodes
        nodes = list(nodes)  # generators and iterators: read once, never dropped
        if not nodes:
            return []
        top_n = len(nodes) if self.top_n is None else self.top_n
        model_name = self._model_name()
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=model_name)
        )
        candidates = [_to_candidate(n, self.allow_urls) for n in nodes]
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: model_name,
                EventPayload.QUERY_STR: query.question,
                EventPayload.TOP_K: top_n,
            },
        ) as event:
            # on_error="fallback": a failing query comes back in its original order, with
            # result.fallback set (the core logs the warning); "raise" propagates.
            result = self._reranker.rerank(query, candidates, top_n=top_n)
            reranked = self._to_nodes(nodes, result)
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        # Cropping and scoring are CPU/GPU bound: run them in a worker thread so the event
        # loop keeps serving other coroutines (contextvars, hence spans, are copied).
        return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)
