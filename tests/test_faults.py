"""Fault injection: scorers that raise mid-batch or run out of memory, croppers that raise or
hang, corrupt cache entries. In fallback mode each query degrades alone (full image or
original order, warning logged) and the others are exactly what a clean run gives; in raise
mode the error surfaces unchanged."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from PIL import Image

from region_rerank import CroppedReranker, RerankerConfig
from region_rerank.cache import candidate_key, scorer_namespace
from region_rerank.croppers.base import BaseCropper
from region_rerank.errors import ConfigError, CropperTimeoutError
from region_rerank.oom import map_batches
from region_rerank.testing import FakeCropper, FakeScorer
from region_rerank.types import Candidate, CropDecision, Query
from tests.test_reranker import ColourPairScorer

LEFT_QUARTER = (0.0, 0.0, 0.25, 1.0)


def scene(i: int = 0) -> Image.Image:
    img = Image.new("RGB", (80, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20 + i, 40))
    return img


def pool(tag: str = "") -> list[Candidate]:
    return [
        Candidate("blue", f"a blue building {tag}", retrieval_score=0.9),
        Candidate("red", f"a red bridge {tag}", retrieval_score=0.1),
        Candidate("green", f"a green tree {tag}", retrieval_score=0.5),
    ]


def batch(n: int = 4) -> tuple[list[Query], list[list[Candidate]]]:
    return [Query(scene(i), f"q{i}", id=f"q{i}") for i in range(n)], [
        pool(f"p{i}") for i in range(n)
    ]


def summary(results: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [(r.ids, [s.score for s in r.ranking], r.decision, r.fallback) for r in results]


def clean_results(queries: list[Query], pools: list[list[Candidate]], **cfg: Any) -> list[Any]:
    rr = CroppedReranker(FakeCropper(LEFT_QUARTER), FakeScorer(), config=RerankerConfig(**cfg))
    return [rr.rerank(q, p) for q, p in zip(queries, pools)]


class PoisonError(RuntimeError):
    """The injected scorer failure."""


class PoisonScorer(FakeScorer):
    """Raises on any text batch containing ``poison``, after ``calls`` successful batches
    have already run in the same reranking (a failure mid-batch)."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison
        self.raised: list[BaseException] = []

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        if any(self.poison in t for t in texts):
            exc = PoisonError(f"scorer crashed on {self.poison!r}")
            self.raised.append(exc)
            raise exc
        return super().embed_texts(texts)


def test_scorer_raising_mid_batch_degrades_only_its_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queries, pools = batch(4)
    scorer = PoisonScorer("p2")
    cfg = RerankerConfig(batch_size=2)  # candidate batches of 2: earlier batches succeed
    rr = CroppedReranker(FakeCropper(LEFT_QUARTER), scorer, config=cfg)
    with caplog.at_level(logging.WARNING):
        got = rr.rerank_batch(queries, pools)
    clean = clean_results(queries, pools, batch_size=2)
    for i in (0, 1, 3):
        assert summary([got[i]]) == summary([clean[i]])
    bad = got[2]
    assert bad.fallback and bad.ids == ["blue", "red", "green"] and not bad.decision.is_crop
    assert "PoisonError" in (bad.error or "") and "degraded" in caplog.text
    strict = CroppedReranker(
        scorer=scorer,
        cropper=FakeCropper(LEFT_QUARTER),
        config=RerankerConfig(batch_size=2, on_error="raise"),
    )
    with pytest.raises(PoisonError) as info:
        strict.rerank_batch(queries, pools)
    assert info.value is scorer.raised[-1]  # the very exception object, not a wrapper


class QuestionCropper(BaseCropper):
    """Crops the left quarter; raises or blocks on scripted questions."""

    name = "scripted"

    def __init__(self, raise_on: str = "", hang_on: str = "") -> None:
        self.raise_on, self.hang_on = raise_on, hang_on
        self.release = threading.Event()
        self.inner = FakeCropper(LEFT_QUARTER)

    def decide_batch(self, queries: Sequence[Query]) -> list[CropDecision]:
        for q in queries:
            if self.raise_on and q.question == self.raise_on:
                raise ValueError(f"policy crashed on {q.question}")
            if self.hang_on and q.question == self.hang_on:
                self.release.wait(30)  # a stuck model; released at the end of the test
        return self.inner.decide_batch(queries)


def test_cropper_raising_on_one_query_keeps_the_others_cropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queries, pools = batch(4)
    rr = CroppedReranker(QuestionCropper(raise_on="q1"), FakeScorer())
    with caplog.at_level(logging.WARNING):
        got = rr.rerank_batch(queries, pools)
    clean = clean_results(queries, pools)
    assert summary([got[i] for i in (0, 2, 3)]) == summary([clean[i] for i in (0, 2, 3)])
    assert got[1].fallback and got[1].decision.source == "fallback"
    assert not got[1].decision.is_crop and "policy crashed" in (got[1].error or "")
    assert got[1].ids[0] == "blue"  # still scored, against the full image
    assert "cropper failed" in caplog.text
    strict = CroppedReranker(
        QuestionCropper(raise_on="q1"), FakeScorer(), config=RerankerConfig(on_error="raise")
    )
    with pytest.raises(ValueError, match="policy crashed on q1"):
        strict.rerank_batch(queries, pools)


def test_hanging_cropper_hits_the_time_budget(caplog: pytest.LogCaptureFixture) -> None:
    queries, pools = batch(3)
    cropper = QuestionCropper(hang_on="q1")
    rr = CroppedReranker(cropper, FakeScorer(), config=RerankerConfig(crop_timeout=0.2))
    try:
        start = time.perf_counter()
        with caplog.at_level(logging.WARNING):
            got = rr.rerank_batch(queries, pools)
        elapsed = time.perf_counter() - start
        # Batch budget 3 x 0.2 s, then one query at a time: q1 gets 0.2 s more. The bound
        # is loose on purpose (shared CI machines): far below the 30 s the cropper blocks.
        assert elapsed < 5.0
        clean = clean_results(queries, pools)
        assert summary([got[0], got[2]]) == summary([clean[0], clean[2]])
        assert got[1].fallback and not got[1].decision.is_crop
        assert "CropperTimeoutError" in (got[1].error or "") and "within 0.2 s" in caplog.text
        strict = CroppedReranker(
            cropper, FakeScorer(), config=RerankerConfig(crop_timeout=0.2, on_error="raise")
        )
        with pytest.raises(CropperTimeoutError, match="did not finish within"):
            strict.rerank(queries[1], pools[1])
    finally:
        cropper.release.set()


def test_time_budget_returns_results_and_errors_of_a_prompt_cropper() -> None:
    queries, pools = batch(2)
    rr = CroppedReranker(
        FakeCropper(LEFT_QUARTER), FakeScorer(), config=RerankerConfig(crop_timeout=5.0)
    )
    assert summary(rr.rerank_batch(queries, pools)) == summary(clean_results(queries, pools))
    strict = CroppedReranker(
        QuestionCropper(raise_on="q0"),
        FakeScorer(),
        config=RerankerConfig(crop_timeout=5.0, on_error="raise"),
    )
    with pytest.raises(ValueError, match="policy crashed"):  # the cropper's own error
        strict.rerank(queries[0], pools[0])
    with pytest.raises(ConfigError, match="crop_timeout"):
        RerankerConfig(crop_timeout=0)


class OOMScorer(FakeScorer):
    """Runs out of memory on any image or text batch larger than ``limit``."""

    def __init__(self, limit: int, error: type[BaseException] = torch.OutOfMemoryError) -> None:
        super().__init__()
        self.limit, self.error = limit, error
        self.sizes: list[int] = []

    def _check(self, n: int) -> None:
        self.sizes.append(n)
        if n > self.limit:
            raise self.error(f"CUDA out of memory on a batch of {n}")

    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        self._check(len(images))
        return super().embed_images(images)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        self._check(len(texts))
        return super().embed_texts(texts)


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, MemoryError])
def test_out_of_memory_retries_with_smaller_batches(
    error: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    queries = [Query(scene(i), "q") for i in range(6)]
    pools = [[Candidate(f"c{j}", f"colour {j} red") for j in range(i, i + 12)] for i in range(6)]
    scorer = OOMScorer(limit=3, error=error)
    cfg = RerankerConfig(batch_size=16, fusion="max", on_error="raise")
    rr = CroppedReranker(FakeCropper(LEFT_QUARTER), scorer, config=cfg)
    with caplog.at_level(logging.WARNING):
        got = rr.rerank_batch(queries, pools)
    small = CroppedReranker(
        FakeCropper(LEFT_QUARTER), FakeScorer(), config=RerankerConfig(batch_size=2, fusion="max")
    )
    assert summary(got) == summary(small.rerank_batch(queries, pools))
    assert any(s > 3 for s in scorer.sizes)  # the OOMs really happened, then were retried
    assert "out of memory" in caplog.text


def test_out_of_memory_on_a_single_item_surfaces_or_degrades() -> None:
    queries, pools = batch(2)
    scorer = OOMScorer(limit=0)
    strict = CroppedReranker(
        FakeCropper(LEFT_QUARTER), scorer, config=RerankerConfig(on_error="raise")
    )
    with pytest.raises(torch.OutOfMemoryError, match="batch of 1"):
        strict.rerank_batch(queries, pools)
    lenient = CroppedReranker(FakeCropper(LEFT_QUARTER), OOMScorer(limit=0))
    got = lenient.rerank_batch(queries, pools)
    assert all(r.fallback and r.ids == ["blue", "red", "green"] for r in got)


def test_out_of_memory_in_a_pair_scorer_halves_the_pool() -> None:
    class TightPairScorer(ColourPairScorer):
        def score_pairs(self, query, view, candidates, image_options=None):  # type: ignore[no-untyped-def]
            if len(candidates) > 2:
                raise torch.OutOfMemoryError("out of memory")
            return super().score_pairs(query, view, candidates, image_options)

    cands = [Candidate(f"c{j}", c) for j, c in enumerate(["blue", "red", "green", "red", "x"])]
    q = Query(scene(), "q")
    tight = CroppedReranker(
        FakeCropper(LEFT_QUARTER), TightPairScorer(), config=RerankerConfig(on_error="raise")
    )
    roomy = CroppedReranker(FakeCropper(LEFT_QUARTER), ColourPairScorer())
    assert summary([tight.rerank(q, cands)]) == summary([roomy.rerank(q, cands)])


def test_map_batches_covers_every_item_once_and_only_retries_memory_errors() -> None:
    calls: list[list[int]] = []

    def fn(chunk: list[int]) -> list[int]:
        calls.append(list(chunk))
        if len(chunk) > 3:
            raise MemoryError
        return [x * 10 for x in chunk]

    out = map_batches(fn, list(range(10)), 8)
    assert [x for part in out for x in part] == [x * 10 for x in range(10)]
    assert [len(c) for c in calls] == [8, 4, 2, 2, 2, 2, 2]
    with pytest.raises(KeyError):
        map_batches(lambda chunk: {}[0], [1, 2, 3], 2)


@pytest.mark.parametrize(
    "corrupt",
    [
        torch.tensor([float("nan")] * 27),
        torch.ones(5),  # wrong length
        torch.ones(27, dtype=torch.int64),  # not floating point
        torch.ones(3, 9),  # not 1-D
    ],
    ids=["nan", "wrong-length", "integer", "2-d"],
)
def test_corrupt_cache_entry_is_evicted_and_recomputed(
    corrupt: torch.Tensor, caplog: pytest.LogCaptureFixture
) -> None:
    scorer = FakeScorer()
    rr = CroppedReranker(FakeCropper(LEFT_QUARTER), scorer)
    q = Query(scene(), "q")
    expected = rr.rerank(q, pool())
    key = candidate_key(pool()[1], scorer_namespace(scorer))
    good = rr.cache.get(key)
    assert good is not None
    rr.cache._data[key] = corrupt  # what a bit flip or a buggy writer leaves behind
    with caplog.at_level(logging.WARNING):
        again = rr.rerank(q, pool())
    assert summary([again]) == summary([expected]) and not again.fallback
    assert rr.cache.corrupt == 1 and "corrupt cache entry" in caplog.text
    fixed = rr.cache.get(key)
    assert fixed is not None and torch.equal(fixed, good)  # recomputed and stored again
