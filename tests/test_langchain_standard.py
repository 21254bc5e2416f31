"""langchain-tests' standard retriever suite, run against RegionRerankRetriever.

The first stage is a tiny in-memory retriever over Documents whose images are PNG bytes in
``metadata["image"]``; the reranker is the deterministic FakeScorer with a scripted crop,
and a default query image is bound so the suite's plain ``invoke(query)`` works.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_region_rerank import RegionRerankRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests
from PIL import Image

from region_rerank import CroppedReranker
from region_rerank.testing import FakeCropper, FakeScorer

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "teal", "white"]


def _png(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


DOCS = [
    Document(f"entry about a {c} thing", id=f"doc-{c}", metadata={"image": _png(c)})
    for c in COLOURS
]


class ListRetriever(BaseRetriever):
    """Returns every stored Document, in storage order (the first stage)."""

    docs: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return list(self.docs)


def _query_image() -> Image.Image:
    img = Image.new("RGB", (64, 32), "blue")
    img.paste((255, 0, 0), (0, 0, 32, 32))
    return img


# The suite's async test (test_ainvoke_returns_documents) needs an event loop. anyio's pytest
# plugin (anyio ships with langchain-core) runs marked coroutines on asyncio and ignores the
# mark on plain functions; pytest-asyncio's strict mode would warn on every sync test.
pytestmark = pytest.mark.anyio


class TestRegionRerankRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[RegionRerankRetriever]:
        return RegionRerankRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {
            "base_retriever": ListRetriever(docs=DOCS),
            "reranker": CroppedReranker(FakeCropper((0.0, 0.0, 0.5, 1.0)), FakeScorer()),
            "k": 2,
            "query_image": _query_image(),
        }

    @property
    def retriever_query_example(self) -> str:
        return "which entry is about this object?"
