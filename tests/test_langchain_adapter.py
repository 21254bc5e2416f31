"""RegionRerankCompressor / RegionRerankRetriever inside real LangChain objects.

The reranker is the real CroppedReranker with the deterministic FakeScorer (colour
histograms vs colour words) and a scripted FakeCropper that keeps the left half of the
query image, so the expected order follows from the pixels.
"""

from __future__ import annotations

import asyncio
import base64
import io
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_region_rerank import (
    MissingQueryImageError,
    RegionRerankCompressor,
    RegionRerankRetriever,
)
from PIL import Image
from pydantic import Field

from region_rerank import Candidate, CroppedReranker, Query
from region_rerank.testing import FakeCropper, FakeScorer

ROOT = Path(__file__).resolve().parents[1]
LEFT_HALF = (0.0, 0.0, 0.5, 1.0)


def _halves(left: str, right: str) -> Image.Image:
    """A 64x32 query image: ``left`` colour on the left half, ``right`` on the right."""
    img = Image.new("RGB", (64, 32), right)
    img.paste(Image.new("RGB", (32, 32), left), (0, 0))
    return img


def _png(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


def _reranker(scorer: FakeScorer | None = None) -> CroppedReranker:
    return CroppedReranker(FakeCropper(LEFT_HALF), scorer or FakeScorer())


def _docs() -> list[Document]:
    """Text-only documents: 'blue' first, so a red crop must move 'red' up."""
    names = ["blue", "green", "red", "yellow"]
    return [
        Document(f"a {c} thing", id=f"d-{c}", metadata={"colour": c, "tags": [c]}) for c in names
    ]


class ListRetriever(BaseRetriever):
    """First stage: returns the stored Documents in order and records the kwargs it got."""

    docs: list[Document]
    seen_kwargs: list[dict[str, Any]] = Field(default_factory=list)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        self.seen_kwargs.append(dict(kwargs))
        return list(self.docs)


# ----------------------------------------------------------------------------- compressor
def test_compressor_matches_core_reranker_and_writes_metadata_on_copies() -> None:
    docs = _docs()
    before = [(d.page_content, dict(d.metadata)) for d in docs]
    img = _halves("red", "blue")
    out = RegionRerankCompressor(reranker=_reranker(), top_n=None).with_query_image(img)
    ranked = out.compress_documents(docs, "which one?")

    expected = _reranker().rerank(
        Query(img, "which one?"), [Candidate(d.id or "", d.page_content) for d in docs]
    )
    assert [d.id for d in ranked] == expected.ids
    assert ranked[0].id == "d-red" and [d.id for d in ranked] != [d.id for d in docs]
    for doc, scored in zip(ranked, expected.ranking):
        assert doc.metadata["relevance_score"] == pytest.approx(scored.score)
        assert doc.metadata["region_rerank_decision"] == expected.decision.to_dict()
        assert doc.metadata["region_rerank_decision"]["action"] == "REGION"
        assert doc.metadata["colour"] in doc.page_content  # caller metadata kept
    # the caller's Documents are untouched and not the objects returned, even deep down
    assert [(d.page_content, d.metadata) for d in docs] == before
    assert all(r is not d for r in ranked for d in docs)
    ranked[0].metadata["tags"].append("x")
    assert [(d.page_content, d.metadata) for d in docs] == before


@pytest.mark.parametrize("encoding", ["path", "image_path", "data_uri", "base64", "bytes", "list"])
def test_document_image_sources(tmp_path: Path, encoding: str) -> None:
    data = {c: _png(c) for c in ("red", "blue")}

    def image_meta(colour: str) -> dict[str, Any]:
        raw = data[colour]
        path = tmp_path / f"{colour}.png"
        path.write_bytes(raw)
        b64 = base64.b64encode(raw).decode()
        table: dict[str, dict[str, Any]] = {
            "path": {"image": str(path)},
            "image_path": {"image_path": str(path)},
            "data_uri": {"image": f"data:image/png;base64,{b64}"},
            "base64": {"image": b64},
            "bytes": {"image": raw},
            "list": {"image": [raw, raw]},
        }
        return table[encoding]

    # texts are equal: only the images can order these documents
    docs = [Document("an entry", id=c, metadata=image_meta(c)) for c in ("blue", "red")]
    img = _halves("red", "blue")
    compressor = RegionRerankCompressor(reranker=_reranker(), top_n=None)
    ranked = compressor.with_query_image(img).compress_documents(docs, "q")

    pil = [Candidate(c, "an entry", images=(Image.open(io.BytesIO(data[c])),)) for c in data]
    expected = _reranker().rerank(Query(img, "q"), pil)
    assert [d.id for d in ranked] == expected.ids == ["red", "blue"]
    for doc, scored in zip(ranked, expected.ranking):
        assert doc.metadata["relevance_score"] == pytest.approx(scored.score, abs=1e-6)


def test_documents_without_images_are_scored_by_text_and_empty_ones_last() -> None:
    docs = [
        Document("", metadata={}),
        Document("blue", metadata={}),
        Document("red", metadata={"image": _png("blue")}),
        Document("red"),
        Document("red", metadata={"image": "", "image_path": None}),  # empty = no image
    ]
    compressor = RegionRerankCompressor(reranker=_reranker(), top_n=None)
    ranked = compressor.with_query_image(_halves("red", "blue")).compress_documents(docs, "q")
    assert ranked[-1].page_content == ""
    assert ranked[-1].metadata["relevance_score"] == float("-inf")
    score = {
        (d.page_content, bool(d.metadata.get("image"))): d.metadata["relevance_score"]
        for d in ranked
    }
    text_red = [d for d in ranked if d.page_content == "red" and not d.metadata.get("image")]
    assert len(text_red) == 2
    assert text_red[0].metadata["relevance_score"] == text_red[1].metadata["relevance_score"]
    assert score[("red", False)] > score[("blue", False)]
    assert score[("red", True)] < score[("red", False)]  # its blue image counts


@pytest.mark.parametrize(("top_n", "expected"), [(1, 1), (3, 3), (None, 4), (0, 0)])
def test_top_n(top_n: int | None, expected: int) -> None:
    compressor = RegionRerankCompressor(reranker=_reranker(), top_n=top_n)
    ranked = compressor.with_query_image(_halves("red", "blue")).compress_documents(_docs(), "q")
    assert len(ranked) == expected
    if expected:
        assert ranked[0].id == "d-red"


def test_missing_query_image_is_a_clear_error_and_empty_input_returns_empty() -> None:
    compressor = RegionRerankCompressor(reranker=_reranker())
    with pytest.raises(MissingQueryImageError, match=r"with_query_image\(image\)"):
        compressor.compress_documents(_docs(), "q")
    assert isinstance(MissingQueryImageError("x"), ValueError)
    # A missing image is an error also for an empty pool (the same in LlamaIndex).
    with pytest.raises(MissingQueryImageError):
        compressor.compress_documents([], "q")
    bound = compressor.with_query_image(_halves("red", "blue"))
    assert bound.compress_documents([], "q") == []


def test_reranker_built_from_spec_strings_and_conflicts_rejected() -> None:
    compressor = RegionRerankCompressor(cropper="full", scorer="fake", top_n=None)
    assert compressor.reranker is not None
    ranked = compressor.with_query_image(_halves("red", "blue")).compress_documents(
        [Document("red"), Document("purple")], "q"
    )
    assert isinstance(compressor.reranker.scorer, FakeScorer)
    assert ranked[0].metadata["region_rerank_decision"]["action"] == "FULL"
    with pytest.raises(ValueError, match="either"):
        RegionRerankCompressor(reranker=_reranker(), scorer="fake")


def test_with_query_image_returns_a_copy_and_is_thread_safe() -> None:
    base = RegionRerankCompressor(reranker=_reranker(), top_n=1)
    images = {"red": _halves("red", "blue"), "blue": _halves("blue", "red")}
    barrier = threading.Barrier(8)

    def work(i: int) -> list[tuple[str, str]]:
        colour = "red" if i % 2 else "blue"
        bound = base.with_query_image(images[colour])
        barrier.wait()
        return [
            (colour, bound.compress_documents(_docs(), "q")[0].metadata["colour"])
            for _ in range(10)
        ]

    with ThreadPoolExecutor(8) as pool:
        results = [pair for chunk in pool.map(work, range(8)) for pair in chunk]
    assert len(results) == 80
    assert all(want == got for want, got in results)
    assert base.query_image is None


class SlowScorer(FakeScorer):
    """The real FakeScorer, with each image embedding call made deliberately slow."""

    def embed_images(self, images: Sequence[Image.Image]) -> Any:
        time.sleep(0.4)  # blocks its thread, as a real model forward pass does
        return super().embed_images(images)


@pytest.mark.anyio
async def test_acompress_documents_does_not_block_the_event_loop() -> None:
    compressor = RegionRerankCompressor(reranker=_reranker(SlowScorer()), top_n=2)
    bound = compressor.with_query_image(_halves("red", "blue"))
    done = asyncio.Event()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    async def compress() -> Sequence[Document]:
        try:
            return await bound.acompress_documents(_docs(), "q")
        finally:
            done.set()

    ranked, _ = await asyncio.gather(compress(), ticker())
    assert [d.id for d in ranked] == ["d-red", ranked[1].id] and len(ranked) == 2
    assert ticks >= 10, f"event loop stalled during re-ranking (only {ticks} ticks)"


# ----------------------------------------------------------------------------- retriever
def _retriever(**kwargs: Any) -> RegionRerankRetriever:
    return RegionRerankRetriever(
        base_retriever=ListRetriever(docs=_docs()),
        reranker=_reranker(),
        **kwargs,
    )


def test_retriever_invoke_with_image_kwarg_k_and_forwarded_kwargs() -> None:
    base = ListRetriever(docs=_docs())
    retriever = RegionRerankRetriever(base_retriever=base, reranker=_reranker(), k=3)
    red = retriever.invoke("which one?", image=_halves("red", "blue"))
    blue = retriever.invoke("which one?", image=_halves("blue", "red"), k=1, flag=True)
    assert len(red) == 3 and red[0].id == "d-red"
    assert [d.id for d in blue] == ["d-blue"]
    assert base.seen_kwargs == [{}, {"flag": True}]  # image and k stay with the reranker
    assert "relevance_score" in red[0].metadata


def test_retriever_bound_default_image_and_per_call_override() -> None:
    plain = _retriever(k=1)
    with pytest.raises(MissingQueryImageError, match=r"image=\.\.\."):
        plain.invoke("q")
    bound = plain.with_query_image(_halves("red", "blue"))
    assert plain.query_image is None
    assert [d.id for d in bound.invoke("q")] == ["d-red"]
    assert [d.id for d in bound.invoke("q", image=_halves("blue", "red"))] == ["d-blue"]


@pytest.mark.anyio
async def test_retriever_ainvoke_with_image() -> None:
    docs = await _retriever(k=2).ainvoke("q", image=_halves("red", "blue"))
    assert docs[0].id == "d-red" and len(docs) == 2


def test_inside_contextual_compression_retriever() -> None:
    contextual = pytest.importorskip("langchain_classic.retrievers.contextual_compression")
    base = ListRetriever(docs=_docs())
    img = _halves("red", "blue")
    compressor = RegionRerankCompressor(reranker=_reranker(), top_n=None)
    retriever = contextual.ContextualCompressionRetriever(
        base_compressor=compressor.with_query_image(img), base_retriever=base
    )
    got = [d.id for d in retriever.invoke("which thing is it?")]

    candidates = [Candidate(d.id or "", d.page_content) for d in base.invoke("x")]
    expected = _reranker().rerank(Query(img, "which thing is it?"), candidates).ids
    assert got == expected
    assert got != [d.id for d in _docs()]


# ----------------------------------------------------------------------------- packaging
@pytest.mark.parametrize("name", ["RegionRerankCompressor", "RegionRerankRetriever"])
def test_missing_langchain_core_names_class_and_extra(name: str) -> None:
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "try:\n"
        f"    from langchain_region_rerank import {name}\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    env_path = f"{ROOT / 'integrations'}:{ROOT}"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == (
        f'{name} needs langchain-core: pip install "region-rerank[langchain]"'
    )
