"""Property-based test of both adapters (issue 13): over random pools (texts, metadata,
retrieval scores, a scorer that fails on some candidates), ``top_n`` and pool containers,
the Guarantees hold inside LlamaIndex and LangChain as in the core: every node / document
comes back at most once and only from the pool, exactly ``top_n`` (or all) of them, best
first with unscorable ones last (or, for a query that degraded, in the pool's own order),
and the caller's objects are unchanged."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_region_rerank import RegionRerankCompressor
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.postprocessor.region_rerank import ImageQueryBundle, RegionRerankPostprocessor
from PIL import Image

from region_rerank import CroppedReranker
from region_rerank.testing import FakeScorer

LOCK = threading.Lock()
texts = st.one_of(
    st.sampled_from(["a red bridge", "a blue lake", "", "   ", "bad \ud800 text", "poison"]),
    st.text(max_size=20),
)
metas = st.fixed_dictionaries(
    {}, optional={"n": st.integers(), "lock": st.just(LOCK), "tags": st.lists(st.text(max_size=3))}
)
entries = st.lists(
    st.tuples(texts, metas, st.one_of(st.none(), st.floats(allow_nan=True))), max_size=7
)
containers = st.sampled_from([list, tuple, iter])


def _image() -> Image.Image:
    img = Image.new("RGB", (48, 32), (30, 30, 220))
    img.paste((220, 30, 30), (0, 0, 16, 32))
    return img


class PoisonScorer(FakeScorer):
    """A fault injected per candidate: texts holding ``poison`` make the scorer raise."""

    def embed_texts(self, texts: Any) -> Any:
        if any("poison" in t for t in texts):
            raise RuntimeError("poisoned text")
        return super().embed_texts(texts)


RERANKER = CroppedReranker("center", PoisonScorer())


def _check(
    out_ids: list[str], pool_ids: list[str], top_n: int | None, scores: list[Any], fallback: bool
) -> None:
    assert len(set(out_ids)) == len(out_ids) and set(out_ids) <= set(pool_ids)
    assert len(out_ids) == (len(pool_ids) if top_n is None else min(top_n, len(pool_ids)))
    if fallback:  # the documented fallback: the pool's own order
        assert out_ids == pool_ids[: len(out_ids)]
        return
    is_finite = [s is not None and s == s and abs(s) != float("inf") for s in scores]
    assert is_finite == sorted(is_finite, reverse=True)  # unscorable ones last
    finite = [s for s, f in zip(scores, is_finite) if f]
    assert finite == sorted(finite, reverse=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool=entries, top_n=st.one_of(st.none(), st.integers(0, 8)), container=containers)
def test_llamaindex_invariants(pool: list[Any], top_n: int | None, container: Any) -> None:
    nodes = [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}", metadata=m), score=s)
        for i, (t, m, s) in enumerate(pool)
    ]
    before = [(n.node.node_id, n.node.text, dict(n.node.metadata), n.score) for n in nodes]
    post = RegionRerankPostprocessor(reranker=RERANKER, top_n=top_n)
    out = post.postprocess_nodes(
        container(nodes), query_bundle=ImageQueryBundle("q", image=_image())
    )
    fallback = any(n.node.metadata["region_rerank_fallback"] for n in out)
    ids = [n.node.node_id for n in out]
    _check(ids, [n.node.node_id for n in nodes], top_n, [n.score for n in out], fallback)
    assert [(n.node.node_id, n.node.text, dict(n.node.metadata), n.score) for n in nodes] == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool=entries, top_n=st.one_of(st.none(), st.integers(0, 8)), container=containers)
def test_langchain_invariants(pool: list[Any], top_n: int | None, container: Any) -> None:
    docs = [Document(page_content=t, metadata={**m, "i": i}) for i, (t, m, _) in enumerate(pool)]
    before = [(d.page_content, dict(d.metadata)) for d in docs]
    comp = RegionRerankCompressor(reranker=RERANKER, top_n=top_n).with_query_image(_image())
    out = comp.compress_documents(container(docs), "q")
    ids = [str(d.metadata["i"]) for d in out]
    fallback = any(d.metadata["region_rerank_decision"]["source"] == "fallback" for d in out)
    scores = [d.metadata["relevance_score"] for d in out]
    _check(ids, [str(i) for i in range(len(docs))], top_n, scores, fallback)
    assert [(d.page_content, dict(d.metadata)) for d in docs] == before
