"""One reranker shared by 8 threads and by asyncio tasks (through both adapters) gives
exactly the results of sequential calls, run after run; its cache ends up holding exactly
what a sequential run stores; identical inputs always give identical rankings."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch
from PIL import Image

from region_rerank import CroppedReranker, RerankerConfig
from region_rerank.testing import FakeCropper, FakeScorer
from region_rerank.types import Candidate, Query

THREADS = 8
ROUNDS = 3
COLOURS = ["red", "green", "blue", "yellow", "cyan", "magenta", "orange", "purple"]


def _png(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), colour).save(buf, format="PNG")
    return buf.getvalue()


def _scene(i: int) -> Image.Image:
    img = Image.new("RGB", (64, 32), COLOURS[(i + 3) % 8])
    img.paste(Image.new("RGB", (32, 32), COLOURS[i % 8]), (0, 0))
    return img


def _box(query: Query) -> tuple[float, float, float, float] | None:
    """Left half for even queries, FULL for odd ones (so both paths run concurrently)."""
    return (0.0, 0.0, 0.5, 1.0) if int(query.id or 0) % 2 == 0 else None


def _cases(n: int = 32) -> list[tuple[Query, list[Candidate]]]:
    """Overlapping pools (text, image and both), so threads hit and fill the same entries."""
    out = []
    for i in range(n):
        pool = [
            Candidate(f"t{j}", f"a {COLOURS[j % 8]} thing", retrieval_score=j / 10)
            for j in range(i % 5, i % 5 + 6)
        ]
        pool += [Candidate(f"i{j}", images=_png(COLOURS[j])) for j in range(i % 3, 8, 2)]
        pool.append(Candidate("both", "red", images=_png("red")))
        pool.append(Candidate("tie", "a red thing"))  # ties t0/t8-like twins: stable order
        out.append((Query(_scene(i), f"what is it {i}?", id=str(i)), pool))
    return out


class SlowScorer(FakeScorer):
    """The fake scorer, with each forward pass releasing the GIL for a moment (as a real
    model's kernels do), so threads really interleave inside the scorer and the cache."""

    def embed_images(self, images: Any) -> torch.Tensor:
        time.sleep(0.001)
        return super().embed_images(images)

    def embed_texts(self, texts: Any) -> torch.Tensor:
        time.sleep(0.001)
        return super().embed_texts(texts)


def _reranker(scorer: FakeScorer | None = None) -> CroppedReranker:
    """A reranker with its own cache (cache keys name the scorer object: pass the same one
    to compare two caches)."""
    config = RerankerConfig(fusion="max")
    return CroppedReranker(FakeCropper(_box), scorer or SlowScorer(), config=config)


def _summary(res: Any) -> tuple[Any, ...]:
    return (
        res.query_id,
        res.ids,
        [(s.score, s.crop_score, s.full_score, s.input_index) for s in res.ranking],
        res.decision,
        res.fallback,
    )


def _cache_contents(rr: CroppedReranker) -> dict[str, torch.Tensor]:
    return dict(rr.cache._data)


def test_eight_threads_match_sequential_calls_and_keep_the_cache_consistent() -> None:
    cases = _cases()
    scorer = SlowScorer()
    sequential_rr = _reranker(scorer)
    expected = [_summary(sequential_rr.rerank(q, p)) for q, p in cases]
    shared = _reranker(scorer)
    assert shared.cache is not sequential_rr.cache
    for round_ in range(ROUNDS):  # round 0: cold cache; later rounds: warm
        with ThreadPoolExecutor(THREADS) as ex:
            got = list(ex.map(lambda qp: _summary(shared.rerank(*qp)), cases))
        assert got == expected, f"round {round_} differs from the sequential run"
        stored, reference = _cache_contents(shared), _cache_contents(sequential_rr)
        assert stored.keys() == reference.keys()
        assert all(torch.equal(stored[k], reference[k]) for k in stored)
        stats = shared.cache.stats()
        assert stats["entries"] == len(reference) and stats["corrupt"] == 0
        assert stats["bytes"] == sum(v.nbytes for v in stored.values())


def test_threads_calling_rerank_batch_match_sequential_calls() -> None:
    cases = _cases(24)
    expected = [_summary(_reranker().rerank(q, p)) for q, p in cases]
    shared = _reranker()
    chunks = [cases[i : i + 3] for i in range(0, len(cases), 3)]

    def run(chunk: list[tuple[Query, list[Candidate]]]) -> list[tuple[Any, ...]]:
        results = shared.rerank_batch([q for q, _ in chunk], [p for _, p in chunk])
        return [_summary(r) for r in results]

    for _ in range(ROUNDS):
        with ThreadPoolExecutor(THREADS) as ex:
            got = [s for part in ex.map(run, chunks) for s in part]
        assert got == expected


def test_identical_inputs_give_identical_rankings_with_ties() -> None:
    q = Query(_scene(0), "q", id="0")
    pool = [Candidate(f"same{j}", "a red thing") for j in range(6)] + [Candidate("x", "blue")]
    first = _summary(_reranker().rerank(q, pool))
    assert first[1][:6] == [f"same{j}" for j in range(6)]  # ties keep the input order
    shared = _reranker()
    with ThreadPoolExecutor(THREADS) as ex:
        runs = list(ex.map(lambda _: _summary(shared.rerank(q, pool)), range(4 * THREADS)))
    assert all(r == first for r in runs)


# --------------------------------------------------------------------------- adapters
def test_llamaindex_async_tasks_match_sequential_calls() -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import ImageNode, NodeWithScore, TextNode
    from llama_index.postprocessor.region_rerank import ImageQueryBundle, RegionRerankPostprocessor

    def nodes(pool: list[Candidate]) -> list[NodeWithScore]:
        out = []
        for c in pool:
            if c.images:
                image = base64.b64encode(c.images[0]).decode()
                node: Any = ImageNode(id_=c.id, text=c.text or "", image=image)
            else:
                node = TextNode(id_=c.id, text=c.text or "")
            out.append(NodeWithScore(node=node, score=c.retrieval_score))
        return out

    cases = [(ImageQueryBundle(q.question, image=q.image), nodes(p)) for q, p in _cases(16)]

    def view(out: list[NodeWithScore]) -> list[tuple[str, float | None]]:
        return [(n.node.node_id, n.score) for n in out]

    pp = RegionRerankPostprocessor(_reranker(), top_n=None)
    expected = [view(pp.postprocess_nodes(n, b)) for b, n in cases]

    async def main() -> list[list[list[tuple[str, float | None]]]]:
        shared = RegionRerankPostprocessor(_reranker(), top_n=None)
        rounds = []
        for _ in range(ROUNDS):
            outs = await asyncio.gather(*(shared.apostprocess_nodes(n, b) for b, n in cases))
            rounds.append([view(o) for o in outs])
        return rounds

    for got in asyncio.run(main()):
        assert got == expected


def test_langchain_async_tasks_match_sequential_calls() -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document
    from langchain_region_rerank import RegionRerankCompressor

    def docs(pool: list[Candidate]) -> list[Document]:
        return [
            Document(page_content=c.text or "", metadata={"cid": c.id, "image": list(c.images)})
            for c in pool
        ]

    cases = [(q, docs(p)) for q, p in _cases(16)]

    def view(out: Any) -> list[tuple[str, float]]:
        return [(d.metadata["cid"], d.metadata["relevance_score"]) for d in out]

    base = RegionRerankCompressor(reranker=_reranker(), top_n=None)
    expected = [
        view(base.with_query_image(q.image).compress_documents(d, q.question)) for q, d in cases
    ]

    async def main() -> list[list[list[tuple[str, float]]]]:
        shared = RegionRerankCompressor(reranker=_reranker(), top_n=None)
        rounds = []
        for _ in range(ROUNDS):
            outs = await asyncio.gather(
                *(
                    shared.with_query_image(q.image).acompress_documents(d, q.question)
                    for q, d in cases
                )
            )
            rounds.append([view(o) for o in outs])
        return rounds

    for got in asyncio.run(main()):
        assert got == expected
