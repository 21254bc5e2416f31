"""LangChain RegionSearchRetriever: a vector store searched with the crop decision's view."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_region_rerank import RegionSearchRetriever, ScorerEmbeddings
from PIL import Image

from region_rerank import CroppedReranker
from region_rerank.adapter_support import DECISION_KEY, RELEVANCE_SCORE_KEY
from region_rerank.boxes import CoordFrame
from region_rerank.errors import ConfigError, MissingQueryImageError
from region_rerank.testing import COLOR_WORDS, FakeCropper, FakeScorer

COLOURS = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange")
BOX = (70, 70, 90, 90)


def _rgb(name: str) -> tuple[int, int, int]:
    r, g, b = COLOR_WORDS[name]
    return (min(255, r * 128), min(255, g * 128), min(255, b * 128))


def _scene() -> Image.Image:
    img = Image.new("RGB", (96, 96), (128, 128, 128))
    img.paste(_rgb("red"), (4, 4, 64, 64))  # big distractor
    img.paste(_rgb("green"), BOX)  # small target
    return img


@pytest.fixture
def store() -> InMemoryVectorStore:
    store = InMemoryVectorStore(ScorerEmbeddings(FakeScorer()))
    store.add_documents([Document(f"{c} entity", id=f"kb_{c}") for c in COLOURS])
    return store


def _retriever(store: InMemoryVectorStore, **kw: Any) -> RegionSearchRetriever:
    reranker = CroppedReranker(FakeCropper(BOX, frame=CoordFrame.PIXELS), FakeScorer())
    return RegionSearchRetriever(vector_store=store, reranker=reranker, **kw)


def test_the_view_searches_the_store(store: InMemoryVectorStore) -> None:
    view = _retriever(store, fetch_k=1, k=1).invoke("what is the small thing?", image=_scene())
    full = _retriever(store, mode="full", fetch_k=1, k=1).invoke("what?", image=_scene())
    assert [d.id for d in view] == ["kb_green"]
    assert [d.id for d in full] == ["kb_red"]
    assert view[0].metadata[DECISION_KEY]["action"] == "REGION"
    assert isinstance(view[0].metadata[RELEVANCE_SCORE_KEY], float)
    stored = store.get_by_ids(["kb_green"])[0]
    assert DECISION_KEY not in stored.metadata  # the store's document is unchanged


def test_fused_keeps_both_and_the_crop_reranks(store: InMemoryVectorStore) -> None:
    docs = _retriever(store, mode="fused", fetch_k=2, k=2).invoke("what?", image=_scene())
    assert [d.id for d in docs] == ["kb_green", "kb_red"]
    bound = _retriever(store, mode="fused", fetch_k=2, k=1).with_query_image(_scene())
    assert [d.id for d in bound.invoke("what?")] == ["kb_green"]


def test_errors_are_typed(store: InMemoryVectorStore) -> None:
    with pytest.raises(MissingQueryImageError):
        _retriever(store).invoke("no image")
    with pytest.raises(ConfigError, match="mode"):
        _retriever(store, mode="nearest")
    with pytest.raises(ConfigError, match="fetch_k"):
        _retriever(store, fetch_k=0)
