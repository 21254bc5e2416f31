"""Issue 13 items 3, 4, 5 and 7 in both adapters: generators are never dropped, hostile
metadata is never deep-copied, pickling is faithful, arguments are validated like the core,
a missing query image is the same typed error in both frameworks."""

from __future__ import annotations

import copy
import pickle
import socket
import threading
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_region_rerank import RegionRerankCompressor, RegionRerankRetriever
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from llama_index.postprocessor.region_rerank import ImageQueryBundle, RegionRerankPostprocessor
from PIL import Image

from region_rerank import CroppedReranker
from region_rerank.errors import ConfigError, MissingQueryImageError, RegionRerankError

TEXTS = ["a red bridge", "a blue lake", "a green tree", "a red car", "grey rocks"]


def _image() -> Image.Image:
    img = Image.new("RGB", (64, 32), (30, 30, 220))
    img.paste((220, 30, 30), (0, 0, 32, 32))
    return img


def _reranker() -> CroppedReranker:
    return CroppedReranker("center", "fake")


def _nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0 - i / 10)
        for i, t in enumerate(TEXTS)
    ]


def _docs(**meta: Any) -> list[Document]:
    return [Document(page_content=t, metadata={"i": i, **meta}) for i, t in enumerate(TEXTS)]


class ListRetriever(BaseRetriever):
    """A picklable first stage returning the fixed documents."""

    def _get_relevant_documents(self, query: str, **kwargs: Any) -> list[Document]:
        return _docs()


def _bundle() -> ImageQueryBundle:
    return ImageQueryBundle("what is the red thing?", image=_image())


def _ids_li(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.node_id for n in nodes]


# ---------------------------------------------------------------- item 3: generators
@pytest.mark.parametrize("top_n", [3, None])
def test_llamaindex_accepts_generators(top_n: int | None) -> None:
    post = RegionRerankPostprocessor(reranker=_reranker(), top_n=top_n)
    expected = post.postprocess_nodes(_nodes(), query_bundle=_bundle())
    got = post.postprocess_nodes((n for n in _nodes()), query_bundle=_bundle())  # type: ignore[arg-type]
    assert _ids_li(got) == _ids_li(expected)
    assert len(got) == (3 if top_n == 3 else len(TEXTS))


def test_langchain_accepts_generators() -> None:
    comp = RegionRerankCompressor(reranker=_reranker(), top_n=None).with_query_image(_image())
    expected = comp.compress_documents(_docs(), "what is the red thing?")
    got = comp.compress_documents((d for d in _docs()), "what is the red thing?")
    assert [d.page_content for d in got] == [d.page_content for d in expected]
    assert len(got) == len(TEXTS)


# ---------------------------------------------------------------- item 4: hostile metadata
def test_langchain_keeps_unpicklable_metadata_without_copying_it() -> None:
    lock, sock = threading.Lock(), socket.socket()
    try:
        docs = _docs(lock=lock, sock=sock)
        before = [dict(d.metadata) for d in docs]
        comp = RegionRerankCompressor(reranker=_reranker(), top_n=2).with_query_image(_image())
        out = comp.compress_documents(docs, "what is the red thing?")
        assert len(out) == 2 and all(d.metadata["lock"] is lock for d in out)
        assert [dict(d.metadata) for d in docs] == before  # the caller's objects unchanged
        assert all("relevance_score" in d.metadata for d in out)
    finally:
        sock.close()


# ---------------------------------------------------------------- item 5: pickling
def test_llamaindex_pickles_faithfully() -> None:
    post = RegionRerankPostprocessor(reranker=_reranker(), top_n=2, keep_retrieval_score=True)
    expected = post.postprocess_nodes(_nodes(), query_bundle=_bundle())
    for clone in (pickle.loads(pickle.dumps(post)), copy.deepcopy(post)):
        assert clone.reranker._cropper_spec == "center"
        assert clone.reranker._scorer_spec == "fake"
        assert clone.top_n == 2 and clone.keep_retrieval_score
        got = clone.postprocess_nodes(_nodes(), query_bundle=_bundle())
        assert _ids_li(got) == _ids_li(expected)
        assert [n.score for n in got] == [n.score for n in expected]


def test_llamaindex_built_from_specs_pickles_its_specs() -> None:
    post = RegionRerankPostprocessor(cropper="center", scorer="fake", top_n=2)
    clone = pickle.loads(pickle.dumps(post))
    assert (clone.cropper, clone.scorer) == ("center", "fake")
    assert clone.reranker._cropper_spec == "center"


def test_llamaindex_refuses_to_pickle_an_unpicklable_reranker() -> None:
    class Unpicklable:
        name = "unpicklable"

        def __reduce__(self) -> Any:
            raise TypeError("no pickling here")

    post = RegionRerankPostprocessor(reranker=CroppedReranker(Unpicklable(), "fake"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot be pickled"):
        pickle.dumps(post)


def test_langchain_compressor_and_retriever_pickle_faithfully() -> None:
    comp = RegionRerankCompressor(reranker=_reranker(), top_n=2).with_query_image(_image())
    clone = pickle.loads(pickle.dumps(comp))
    assert clone.reranker is not None and clone.reranker._cropper_spec == "center"
    q = "what is the red thing?"
    expected = [d.page_content for d in comp.compress_documents(_docs(), q)]
    assert [d.page_content for d in clone.compress_documents(_docs(), q)] == expected

    retr = RegionRerankRetriever(base_retriever=ListRetriever(), reranker=_reranker(), k=2)
    again = pickle.loads(pickle.dumps(retr))
    assert again.k == 2 and again.reranker._scorer_spec == "fake"
    got = again.invoke(q, image=_image())
    assert [d.page_content for d in got] == [d.page_content for d in retr.invoke(q, image=_image())]


# ---------------------------------------------------------------- item 7: validation
@pytest.mark.parametrize("bad", [True, 1.0, "2", -1])
def test_top_n_is_validated_like_the_core(bad: Any) -> None:
    with pytest.raises(ConfigError, match="top_n"):
        RegionRerankPostprocessor(reranker=_reranker(), top_n=bad)
    with pytest.raises(ConfigError, match="top_n"):
        RegionRerankCompressor(reranker=_reranker(), top_n=bad)
    with pytest.raises(ConfigError, match="k"):
        RegionRerankRetriever(base_retriever=_reranker, reranker=_reranker(), k=bad)  # type: ignore[arg-type]


def test_a_missing_query_image_is_the_same_typed_error_in_both() -> None:
    assert issubclass(MissingQueryImageError, RegionRerankError)
    post = RegionRerankPostprocessor(reranker=_reranker())
    comp = RegionRerankCompressor(reranker=_reranker())
    for nodes, docs in (([], []), (_nodes(), _docs())):
        with pytest.raises(MissingQueryImageError):
            post.postprocess_nodes(nodes, query_str="what is it?")
        with pytest.raises(MissingQueryImageError):
            comp.compress_documents(docs, "what is it?")


def test_on_error_is_exposed_by_both_adapters() -> None:
    post = RegionRerankPostprocessor(cropper="center", scorer="fake", on_error="raise")
    comp = RegionRerankCompressor(cropper="center", scorer="fake", on_error="raise")
    assert post.reranker.config.on_error == comp.reranker.config.on_error == "raise"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="on_error"):
        RegionRerankPostprocessor(cropper="center", scorer="fake", on_error="ignore")
    with pytest.raises(ConfigError, match="on_error"):
        RegionRerankPostprocessor(reranker=_reranker(), on_error="raise")  # differs from its own


def test_the_retrieval_score_stays_out_of_llm_content() -> None:
    post = RegionRerankPostprocessor(reranker=_reranker(), keep_retrieval_score=True)
    out = post.postprocess_nodes(_nodes(), query_bundle=_bundle())
    assert all("retrieval_score" in n.node.metadata for n in out)
    assert all("retrieval_score" not in n.node.get_content(MetadataMode.LLM) for n in out)
