"""The LlamaIndex RegionRetriever: the crop decision drives the node search and the re-rank,
inside a real query engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, TextNode
from llama_index.postprocessor.region_rerank import DECISION_KEY, ImageQueryBundle
from llama_index.retrievers.region_rerank import RegionRetriever
from PIL import Image

from region_rerank import CroppedReranker
from region_rerank.boxes import CoordFrame
from region_rerank.errors import ConfigError, MissingQueryImageError
from region_rerank.testing import COLOR_WORDS, FakeCropper, FakeScorer

COLOURS = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange")
BOX = (70, 70, 90, 90)


def _rgb(name: str) -> tuple[int, int, int]:
    r, g, b = COLOR_WORDS[name]
    return (min(255, r * 128), min(255, g * 128), min(255, b * 128))


@pytest.fixture
def nodes(tmp_path: Path) -> list[ImageNode]:
    out = []
    for c in COLOURS:
        path = tmp_path / f"{c}.png"
        Image.new("RGB", (16, 16), _rgb(c)).save(path)
        out.append(ImageNode(id_=f"kb_{c}", text=f"{c} entity", image_path=str(path)))
    return out


def _scene() -> Image.Image:
    img = Image.new("RGB", (96, 96), (128, 128, 128))
    img.paste(_rgb("red"), (4, 4, 64, 64))  # big distractor
    img.paste(_rgb("green"), BOX)  # small target
    return img


def _reranker() -> CroppedReranker:
    return CroppedReranker(FakeCropper(BOX, frame=CoordFrame.PIXELS), FakeScorer())


def test_the_view_finds_the_small_target(nodes: list[ImageNode]) -> None:
    bundle = ImageQueryBundle("what is the small thing?", image=_scene())
    view = RegionRetriever(nodes, _reranker(), similarity_top_k=1).retrieve(bundle)
    full = RegionRetriever(nodes, _reranker(), mode="full", similarity_top_k=1).retrieve(bundle)
    assert [n.node.node_id for n in view] == ["kb_green"]
    assert [n.node.node_id for n in full] == ["kb_red"]
    meta = view[0].node.metadata
    assert meta[DECISION_KEY]["action"] == "REGION"
    assert DECISION_KEY in view[0].node.excluded_llm_metadata_keys
    assert DECISION_KEY not in nodes[1].metadata  # the caller's node is unchanged
    assert view[0].node is not nodes[1]


def test_inside_a_query_engine_and_async(nodes: list[ImageNode]) -> None:
    retriever = RegionRetriever(nodes, _reranker(), mode="fused", similarity_top_k=3, top_n=2)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query(ImageQueryBundle("what is the small thing?", image=_scene()))
    assert response.source_nodes[0].node.node_id == "kb_green"
    assert len(response.source_nodes) == 2
    got = asyncio.run(retriever.aretrieve(ImageQueryBundle("what?", image=_scene())))
    assert [n.node.node_id for n in got] == [n.node.node_id for n in response.source_nodes]


def test_errors_are_typed(nodes: list[ImageNode]) -> None:
    retriever = RegionRetriever(nodes, _reranker())
    with pytest.raises(MissingQueryImageError):
        retriever.retrieve("a question without an image")
    with pytest.raises(ConfigError, match="duplicate node id"):
        RegionRetriever([*nodes, nodes[0]], _reranker())
    with pytest.raises(ConfigError, match="top_n"):
        RegionRetriever(nodes, _reranker(), top_n="2")  # type: ignore[arg-type]
    text_only = [TextNode(id_="t", text="green entity")]
    out = RegionRetriever(text_only, _reranker(), similarity_top_k=1).retrieve(
        ImageQueryBundle("q", image=_scene())
    )
    assert [n.node.node_id for n in out] == ["t"]  # text nodes are searched by their text
