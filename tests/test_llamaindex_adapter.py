"""The LlamaIndex adapter, tested inside real LlamaIndex indexes and query engines.

Every reranker here is a real :class:`CroppedReranker`; the fast tests use the public fakes
(colour-histogram scorer, scripted cropper), one test uses the embedded demo scorer. The
expected rankings come from calling the core directly on candidates built from the demo
world's records, so the adapter is checked against the core, not against itself.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.bridge.pydantic import Field
from llama_index.core.embeddings import MockEmbedding, MockMultiModalEmbedding
from llama_index.core.indices.multi_modal import MultiModalVectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.region_rerank import (
    BOX_KEY,
    DECISION_KEY,
    FALLBACK_KEY,
    RETRIEVAL_SCORE_KEY,
    ImageQueryBundle,
    RegionRerankPostprocessor,
)
from PIL import Image

from region_rerank import (
    Candidate,
    CoordFrame,
    CroppedReranker,
    ImageLoadError,
    ImageLoadOptions,
    Query,
    RerankerConfig,
)
from region_rerank.demo.world import make_world
from region_rerank.model_options import ModelOptions
from region_rerank.testing import FakeCropper, FakeScorer

ADAPTER_MODULE = "llama_index.postprocessor.region_rerank.base"
N_IMAGE_NODES = 16


# ----------------------------------------------------------------------------- fixtures
class World:
    """The demo world on disk: KB records, query records and the node list over the KB."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.kb = [json.loads(line) for line in (root / "kb.jsonl").open()]
        self.queries = [json.loads(line) for line in (root / "test" / "queries.jsonl").open()]
        self.by_id = {r["id"]: r for r in self.kb}
        self.with_image = {r["id"] for r in self.kb[:N_IMAGE_NODES]}

    def kb_image(self, entity_id: str) -> Path:
        return self.root / self.by_id[entity_id]["images"][0]

    def query_image(self, q: dict[str, Any]) -> str:
        return str(self.root / "test" / q["image"])

    def nodes(self) -> list[TextNode]:
        """Image nodes with each image source LlamaIndex uses, then text-only nodes."""
        nodes: list[TextNode] = []
        for i, rec in enumerate(self.kb):
            path = self.kb_image(rec["id"])
            if i >= N_IMAGE_NODES:
                nodes.append(TextNode(id_=rec["id"], text=rec["text"]))
            elif i % 3 == 0:
                b64 = base64.b64encode(path.read_bytes()).decode()
                nodes.append(ImageNode(id_=rec["id"], text=rec["text"], image=b64))
            elif i % 3 == 1:
                nodes.append(ImageNode(id_=rec["id"], text=rec["text"], image_path=str(path)))
            else:  # an image known only through metadata["file_path"]
                meta = {"file_path": str(path)}
                nodes.append(TextNode(id_=rec["id"], text=rec["text"], metadata=meta))
        return nodes

    def expected_candidates(self, retrieved: Sequence[NodeWithScore]) -> list[Candidate]:
        """The core's view of the retrieved nodes, built from the world's records."""
        out = []
        for item in retrieved:
            rec = self.by_id[item.node.node_id]
            has_image = rec["id"] in self.with_image
            images = (str(self.kb_image(rec["id"])),) if has_image else ()
            out.append(Candidate(rec["id"], rec["text"], images, retrieval_score=item.score))
        return out

    def oracle(self) -> FakeCropper:
        """Crops the ground-truth box of each query (queries carry their id)."""
        boxes = {q["id"]: q["box"] for q in self.queries}
        return FakeCropper(lambda query: boxes[query.id], frame=CoordFrame.PIXELS)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world")
    make_world(root, n_train=0, n_val=0, n_test=4, n_entities=24, kb_images=1, kb_image_size=64)
    return World(root)


def _bundle(world: World, q: dict[str, Any]) -> ImageQueryBundle:
    return ImageQueryBundle(q["question"], image_path=world.query_image(q), query_id=q["id"])


def _ids(nodes: Sequence[NodeWithScore]) -> list[str]:
    return [n.node.node_id for n in nodes]


def _split_image(left: str, right: str) -> Image.Image:
    img = Image.new("RGB", (64, 32), right)
    img.paste(Image.new("RGB", (32, 32), left), (0, 0))
    return img


def _colour_nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(id_="b", text="a blue thing", metadata={"k": [1]}), score=0.9),
        NodeWithScore(node=TextNode(id_="r", text="a red thing", metadata={"k": [2]}), score=0.5),
    ]


def _fake_pp(**kwargs: Any) -> RegionRerankPostprocessor:
    reranker = CroppedReranker(FakeCropper((0.0, 0.0, 0.5, 1.0)), FakeScorer())
    return RegionRerankPostprocessor(reranker, **kwargs)


# ----------------------------------------------------------------------- end to end
def test_multimodal_index_query_engine_returns_the_reranked_nodes(world: World) -> None:
    index = MultiModalVectorStoreIndex(
        world.nodes(),
        embed_model=MockEmbedding(embed_dim=8),
        image_embed_model=MockMultiModalEmbedding(embed_dim=8),
    )
    retriever = index.as_retriever(similarity_top_k=10, image_similarity_top_k=10)
    reranker = CroppedReranker(world.oracle(), FakeScorer())
    engine = RetrieverQueryEngine.from_args(
        retriever,
        llm=MockLLM(),
        node_postprocessors=[RegionRerankPostprocessor(reranker, top_n=5)],
    )
    for q in world.queries:
        bundle = _bundle(world, q)
        retrieved = retriever.retrieve(bundle)
        assert any(isinstance(n.node, ImageNode) for n in retrieved)
        response = engine.query(bundle)
        expected = reranker.rerank(
            Query(world.query_image(q), q["question"], id=q["id"]),
            world.expected_candidates(retrieved),
            top_n=5,
        )
        got = response.source_nodes
        assert _ids(got) == expected.ids
        assert _ids(got) != _ids(retrieved)[:5]  # the postprocessor did reorder
        assert [n.score for n in got] == pytest.approx([s.score for s in expected.ranking])
        assert expected.decision.is_crop
        for n in got:
            assert n.node.metadata[DECISION_KEY] == expected.decision.to_dict()
            assert n.node.metadata[DECISION_KEY]["action"] == "REGION"
            assert n.node.metadata[BOX_KEY] == pytest.approx(q["box"])
            assert n.node.metadata[FALLBACK_KEY] is False
            assert DECISION_KEY not in n.node.get_content(metadata_mode=MetadataMode.LLM)


def test_vector_index_query_engine_with_image_object_and_text_nodes(world: World) -> None:
    index = VectorStoreIndex(world.nodes(), embed_model=MockEmbedding(embed_dim=8))
    retriever = index.as_retriever(similarity_top_k=12)
    q = world.queries[0]
    box = q["box"]
    reranker = CroppedReranker(FakeCropper(box, frame=CoordFrame.PIXELS), FakeScorer())
    pp = RegionRerankPostprocessor(reranker, top_n=3, keep_retrieval_score=True)
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=12, node_postprocessors=[pp])
    image = Image.open(world.query_image(q)).convert("RGB")
    bundle = ImageQueryBundle(q["question"], image=image)
    retrieved = retriever.retrieve(bundle)
    assert any(not isinstance(n.node, ImageNode) for n in retrieved)  # text-only nodes too
    response = engine.query(bundle)
    expected = reranker.rerank(Query(image, q["question"]), world.expected_candidates(retrieved), 3)
    assert _ids(response.source_nodes) == expected.ids
    assert len(response.source_nodes) == 3
    for n in response.source_nodes:
        assert n.node.metadata[RETRIEVAL_SCORE_KEY] == pytest.approx(retrieved[0].score)


def test_demo_scorer_in_a_query_engine_moves_the_answer_up(world: World) -> None:
    from region_rerank.demo.scorer import DemoScorer

    index = VectorStoreIndex(world.nodes()[:N_IMAGE_NODES], embed_model=MockEmbedding(embed_dim=8))
    retriever = index.as_retriever(similarity_top_k=N_IMAGE_NODES)
    reranker = CroppedReranker(world.oracle(), DemoScorer(model_options=ModelOptions(device="cpu")))
    engine = index.as_query_engine(
        llm=MockLLM(),
        similarity_top_k=N_IMAGE_NODES,
        node_postprocessors=[RegionRerankPostprocessor(reranker, top_n=None)],
    )
    moved_up = 0
    for q in world.queries:
        positive = q["positives"][0]
        if positive not in world.by_id or world.kb.index(world.by_id[positive]) >= N_IMAGE_NODES:
            continue
        bundle = _bundle(world, q)
        before = _ids(retriever.retrieve(bundle))
        after = _ids(engine.query(bundle).source_nodes)
        assert sorted(after) == sorted(before)  # top_n=None keeps every node
        moved_up += after.index(positive) < before.index(positive)
        assert after.index(positive) <= 2
    assert moved_up >= 1


# --------------------------------------------------------------------------- contract
def test_empty_input_returns_an_empty_list() -> None:
    bundle = ImageQueryBundle("what?", image=_split_image("red", "blue"))
    assert _fake_pp().postprocess_nodes([], bundle) == []


def test_a_missing_query_bundle_or_image_is_a_clear_error() -> None:
    pp = _fake_pp()
    with pytest.raises(ValueError, match="needs a query bundle"):
        pp.postprocess_nodes(_colour_nodes())
    with pytest.raises(ValueError, match="needs a query image"):
        pp.postprocess_nodes(_colour_nodes(), query_str="what is it?")


def test_text_only_nodes_are_scored_by_text_against_the_crop() -> None:
    nodes = _colour_nodes()
    image = _split_image("red", "blue")
    left = _fake_pp(top_n=None).postprocess_nodes(nodes, ImageQueryBundle("?", image=image))
    assert _ids(left) == ["r", "b"]
    assert left[0].score > left[1].score
    right = RegionRerankPostprocessor(
        CroppedReranker(FakeCropper((0.5, 0.0, 1.0, 1.0)), FakeScorer()), top_n=1
    ).postprocess_nodes(nodes, ImageQueryBundle("?", image=image))
    assert _ids(right) == ["b"]


def test_query_image_from_bytes_and_from_image_path(tmp_path: Path) -> None:
    image = _split_image("red", "blue")
    path = tmp_path / "q.png"
    image.save(path)
    pp = _fake_pp(top_n=None)
    by_bytes = pp.postprocess_nodes(_colour_nodes(), ImageQueryBundle("?", image=path.read_bytes()))
    by_path = pp.postprocess_nodes(_colour_nodes(), QueryBundle("?", image_path=str(path)))
    assert _ids(by_bytes) == _ids(by_path) == ["r", "b"]


def test_the_callers_nodes_are_never_modified() -> None:
    nodes = _colour_nodes()
    before = [
        (n.score, copy.deepcopy(n.node.metadata), list(n.node.excluded_llm_metadata_keys))
        for n in nodes
    ]
    pp = _fake_pp(top_n=None, keep_retrieval_score=True)
    out = pp.postprocess_nodes(nodes, ImageQueryBundle("?", image=_split_image("red", "blue")))
    after = [(n.score, n.node.metadata, list(n.node.excluded_llm_metadata_keys)) for n in nodes]
    assert after == before
    assert all(DECISION_KEY not in n.node.metadata for n in nodes)
    for item in out:
        assert all(item is not n and item.node is not n.node for n in nodes)
        original = next(n for n in nodes if n.node.node_id == item.node.node_id)
        assert item.node.metadata[RETRIEVAL_SCORE_KEY] == original.score
        assert item.node.metadata["k"] == original.node.metadata["k"]
        assert item.node.metadata[DECISION_KEY]["box"] == [0.0, 0.0, 32.0, 32.0]


def test_file_path_metadata_counts_as_an_image_only_for_image_files(world: World) -> None:
    rec = world.kb[0]
    path = str(world.kb_image(rec["id"]))
    nodes = [
        NodeWithScore(node=TextNode(id_="img", metadata={"file_path": path}), score=0.1),
        NodeWithScore(node=TextNode(id_="pdf", metadata={"file_path": "/x/doc.pdf"}), score=0.2),
    ]
    pp = RegionRerankPostprocessor(cropper="full", scorer="fake", top_n=None)
    out = pp.postprocess_nodes(nodes, ImageQueryBundle("?", image=path))
    assert _ids(out) == ["img", "pdf"]
    assert out[0].score == pytest.approx(1.0, abs=1e-3)  # the same image as the query
    assert out[1].score == float("-inf")  # no text, no image: ranked last
    assert out[0].node.metadata[FALLBACK_KEY] is False


URL = "http://203.0.113.7/red.png"  # TEST-NET-3: never routable; tests block the network


def _url_nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(id_="b", text="blue"), score=0.9),
        NodeWithScore(node=ImageNode(id_="u", text="red", image_url=URL), score=0.3),
    ]


def test_image_urls_are_ignored_unless_allowed() -> None:
    bundle = ImageQueryBundle("?", image=_split_image("red", "blue"))
    out = _fake_pp(top_n=None).postprocess_nodes(_url_nodes(), bundle)
    # Scored by its text "red" (a fetch would have failed and degraded the query).
    assert _ids(out) == ["u", "b"]
    assert out[0].node.metadata[FALLBACK_KEY] is False
    text_twin = [NodeWithScore(node=TextNode(id_="t", text="red"), score=0.3)]
    assert out[0].score == pytest.approx(_fake_pp().postprocess_nodes(text_twin, bundle)[0].score)


def test_allowed_url_that_fails_offline_scores_that_node_by_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bundle = ImageQueryBundle("?", image=_split_image("red", "blue"))
    pp = RegionRerankPostprocessor(cropper="fake", scorer="fake", allow_urls=True, top_n=None)
    assert pp.reranker.config.image_options.allow_urls
    with caplog.at_level(logging.WARNING):
        out = pp.postprocess_nodes(_url_nodes(), bundle)
    # Per-candidate fallback: the unfetchable image is dropped, the node keeps its text
    # score, the query is not degraded and no node is lost.
    assert sorted(_ids(out)) == ["b", "u"]
    meta = out[0].node.metadata
    assert meta[FALLBACK_KEY] is False
    assert meta[DECISION_KEY]["source"] != "fallback"
    assert "undecodable image" in caplog.text and "cannot fetch image" in caplog.text
    text_twin = [NodeWithScore(node=TextNode(id_="t", text="red"), score=0.3)]
    twin_pp = RegionRerankPostprocessor(cropper="fake", scorer="fake", top_n=None)
    by_id = {n.node.node_id: n.score for n in out}
    assert by_id["u"] == pytest.approx(twin_pp.postprocess_nodes(text_twin, bundle)[0].score)

    strict = CroppedReranker(
        FakeCropper(),
        FakeScorer(),
        config=RerankerConfig(on_error="raise", image_options=ImageLoadOptions(allow_urls=True)),
    )
    with pytest.raises(ImageLoadError, match="cannot fetch image"):
        RegionRerankPostprocessor(strict, allow_urls=True).postprocess_nodes(_url_nodes(), bundle)


def test_constructor_checks_its_arguments() -> None:
    reranker = CroppedReranker(FakeCropper(), FakeScorer())
    with pytest.raises(ValueError, match="not both"):
        RegionRerankPostprocessor(reranker, scorer="fake")
    with pytest.raises(ValueError, match="allow_urls=True"):
        RegionRerankPostprocessor(reranker, allow_urls=True)
    with pytest.raises(ValueError):
        RegionRerankPostprocessor(reranker, top_n=-1)
    pp = RegionRerankPostprocessor(cropper="fake", scorer="fake", top_n=2)
    assert pp.reranker.config.image_options.allow_urls is False
    assert pp.to_dict()["class_name"] == "RegionRerankPostprocessor"
    assert pp.to_dict()["scorer"] == "fake"


class _Collector(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "_Collector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


def test_rerank_start_and_end_events_reach_a_dispatcher_handler() -> None:
    dispatcher = get_dispatcher(ADAPTER_MODULE)
    handler = _Collector(events=[])
    dispatcher.add_event_handler(handler)
    try:
        nodes = _colour_nodes()
        bundle = ImageQueryBundle("?", image=_split_image("red", "blue"))
        out = _fake_pp(top_n=1).postprocess_nodes(nodes, bundle)
    finally:
        dispatcher.event_handlers.remove(handler)
    starts = [e for e in handler.events if isinstance(e, ReRankStartEvent)]
    ends = [e for e in handler.events if isinstance(e, ReRankEndEvent)]
    assert len(starts) == len(ends) == 1
    assert starts[0].top_n == 1
    assert starts[0].model_name == "region-rerank:fake+fake"
    assert _ids(starts[0].nodes) == ["b", "r"]
    assert starts[0].query is bundle
    assert _ids(ends[0].nodes) == _ids(out) == ["r"]


# ------------------------------------------------------------------------------ async
class SlowFakeScorer(FakeScorer):
    """The real fake scorer, slowed down: each image batch sleeps in the calling thread."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.busy: list[tuple[float, float]] = []

    def embed_images(self, images: Sequence[Image.Image]) -> Any:
        start = time.perf_counter()
        time.sleep(self.delay)
        self.busy.append((start, time.perf_counter()))
        return super().embed_images(images)


def _ticks_while_busy(blocking: bool) -> tuple[list[str], int]:
    scorer = SlowFakeScorer(delay=0.2)
    pp = RegionRerankPostprocessor(
        CroppedReranker(FakeCropper((0.0, 0.0, 0.5, 1.0)), scorer), top_n=None
    )
    nodes = [
        NodeWithScore(node=ImageNode(id_=c, image=_b64(_split_image(c, c))), score=0.5)
        for c in ("blue", "red")
    ]
    bundle = ImageQueryBundle("?", image=_split_image("red", "blue"))
    ticks: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    async def main() -> list[NodeWithScore]:
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        await asyncio.sleep(0)
        if blocking:  # what a naive async override would do
            out = pp.postprocess_nodes(nodes, bundle)
        else:
            out = await pp.apostprocess_nodes(nodes, bundle)
        stop.set()
        await task
        return out

    out = asyncio.run(main())
    assert scorer.busy
    inside = sum(any(a < t < b for a, b in scorer.busy) for t in ticks)
    return _ids(out), inside


def _b64(image: Image.Image) -> str:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_async_path_keeps_the_event_loop_running() -> None:
    ids, ticks_inside = _ticks_while_busy(blocking=False)
    assert ids == ["red", "blue"]
    assert ticks_inside >= 10  # the other coroutine ran while the scorer was busy
    _, blocked_ticks = _ticks_while_busy(blocking=True)
    assert blocked_ticks == 0  # sanity check of the measurement


# -------------------------------------------------------------------------- packaging
def test_missing_llama_index_core_names_the_class_and_the_extra() -> None:
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "llama_index.core" or name.startswith("llama_index.core."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Block())
        try:
            import llama_index.postprocessor.region_rerank
        except ImportError as exc:
            print(exc)
        else:
            sys.exit("the adapter imported without llama_index.core")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "RegionRerankPostprocessor needs llama-index-core" in proc.stdout
    assert 'pip install "region-rerank[llamaindex]"' in proc.stdout
