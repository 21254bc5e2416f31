"""Pool building: exact brute force, chunk-size invariance, deterministic ties, pools files.

The tiny world (also used by the runner tests): KB entries are plain colours described by
their colour word; each query image is a grey canvas with a big distractor square of one
colour and a small target square of another (the positive). The colour-histogram
:class:`FakeScorer` therefore ranks the distractor first on the full image and the target
first on a crop of the ground-truth box.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from region_rerank.errors import ConfigError
from region_rerank.eval.datasets import (
    EvalDataset,
    EvalQuery,
    KBEntry,
    load_jsonl_dataset,
    load_pools_jsonl,
    write_jsonl_dataset,
)
from region_rerank.eval.pools import build_pools, write_pools_jsonl
from region_rerank.index import faiss_available
from region_rerank.testing import COLOR_WORDS, FakeScorer
from region_rerank.types import Box

#: The searches every tie-breaking check runs with (FAISS only when installed).
FAISS_CHOICES = (False, True) if faiss_available() else (False,)

COLOURS = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange", "purple")
GREY = (128, 128, 128)


def rgb(name: str) -> tuple[int, int, int]:
    r, g, b = COLOR_WORDS[name]
    return (min(255, r * 128), min(255, g * 128), min(255, b * 128))


def scene(
    distractor: str, target: str, target_box: tuple[int, int, int, int], size: int = 96
) -> Image.Image:
    img = Image.new("RGB", (size, size), GREY)
    img.paste(rgb(distractor), (4, 4, 4 + size // 2 + 10, 4 + size // 2 + 10))
    img.paste(rgb(target), target_box)
    return img


#: (distractor, target, target box); the last query has a big target and no GT box.
SCENES: tuple[tuple[str, str, tuple[int, int, int, int] | None], ...] = (
    ("red", "green", (70, 70, 90, 90)),
    ("blue", "yellow", (66, 8, 90, 30)),
    ("green", "magenta", (8, 70, 30, 92)),
    ("yellow", "cyan", (72, 60, 92, 80)),
    ("cyan", "orange", (66, 70, 86, 90)),
    ("magenta", "purple", (70, 10, 92, 32)),
    ("orange", "blue", (10, 72, 30, 92)),
    ("purple", "red", (60, 64, 88, 92)),
    ("green", "blue", None),
)


def make_dataset(pools: dict[str, Any] | None = None) -> EvalDataset:
    kb = [
        KBEntry(id=f"kb_{c}", text=f"{c} entity", images=(Image.new("RGB", (16, 16), rgb(c)),))
        for c in COLOURS
    ]
    queries = []
    for i, (dis, tgt, box) in enumerate(SCENES):
        if box is None:  # the target covers most of the image: the full image suffices
            img = Image.new("RGB", (96, 96), rgb(tgt))
            img.paste(rgb(dis), (0, 0, 20, 20))
        else:
            img = scene(dis, tgt, box)
        queries.append(
            EvalQuery(
                id=f"q{i}",
                image=img,
                question=f"which entity is the small {tgt} square?",
                positives=frozenset({f"kb_{tgt}"}),
                box=Box(*box) if box else None,
                question_type="small" if box else "large",
            )
        )
    return EvalDataset(
        name="tiny", queries=tuple(queries), kb={e.id: e for e in kb}, pools=pools or {}
    )


def make_world(folder: Path, *, with_pools: bool = True, k: int = 4) -> Path:
    """Write the tiny world to ``folder`` (with pools built by the fake scorer)."""
    dataset = make_dataset()
    write_jsonl_dataset(dataset, folder)
    if with_pools:
        loaded = load_jsonl_dataset(folder)
        write_pools_jsonl(
            build_pools(loaded, FakeScorer(), k=k, progress=False), folder / "pools.jsonl"
        )
    return folder


class ShapeRecordingScorer(FakeScorer):
    """A FakeScorer that remembers the shape of every score matrix it produces."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, int]] = []

    def score(self, queries: Any, candidates: Any) -> Any:
        out = super().score(queries, candidates)
        self.shapes.append(tuple(out.shape))
        return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> EvalDataset:
    folder = tmp_path_factory.mktemp("pools_world")
    write_jsonl_dataset(make_dataset(), folder)
    return load_jsonl_dataset(folder)


def _ids(pool: Sequence[tuple[str, float]]) -> list[str]:
    return [cid for cid, _ in pool]


def test_pools_rank_the_full_image_view_and_contain_the_positive(world: EvalDataset) -> None:
    pools = build_pools(world, FakeScorer(), k=3, progress=False)
    assert list(pools) == [q.id for q in world.queries]
    for (dis, tgt, _), query in zip(SCENES, world.queries):
        pool = pools[query.id]
        assert len(pool) == 3
        scores = [s for _, s in pool]
        assert scores == sorted(scores, reverse=True)
        assert _ids(pool)[:2] == [f"kb_{dis}", f"kb_{tgt}"] or query.box is None
        assert f"kb_{tgt}" in _ids(pool)  # coverage: the positive is retrieved
    # With k=1 the full image retrieves the big distractor, never the small target.
    top1 = build_pools(world, FakeScorer(), k=1, progress=False)
    for (dis, _, box), query in zip(SCENES, world.queries):
        if box is not None:
            assert _ids(top1[query.id]) == [f"kb_{dis}"]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7])
def test_chunked_equals_unchunked_exactly(world: EvalDataset, chunk_size: int) -> None:
    whole = build_pools(world, FakeScorer(), k=5, chunk_size=4096, progress=False)
    chunked = build_pools(world, FakeScorer(), k=5, chunk_size=chunk_size, progress=False)
    assert chunked == whole


def test_no_score_block_larger_than_a_chunk(world: EvalDataset) -> None:
    scorer = ShapeRecordingScorer()
    build_pools(world, scorer, k=4, chunk_size=3, batch_size=2, use_faiss=False, progress=False)
    assert scorer.shapes and max(r for r, _ in scorer.shapes) <= 3
    assert max(c for _, c in scorer.shapes) <= 3
    # 9 queries x 8 entries in 3x3 blocks: ceil(9/3) * ceil(8/3) blocks.
    assert len(scorer.shapes) == 3 * 3


def test_ties_are_broken_by_kb_id_across_chunks() -> None:
    red = Image.new("RGB", (16, 16), rgb("red"))
    kb = [KBEntry(id=i, text="red entity", images=(red,)) for i in ("zz", "mm", "aa", "qq")]
    kb.append(KBEntry(id="blue", text="blue entity", images=(Image.new("RGB", (8, 8), "blue"),)))
    query = EvalQuery(id="q", image=Image.new("RGB", (32, 32), rgb("red")), question="?")
    data = EvalDataset(name="ties", queries=(query,), kb={e.id: e for e in kb})
    for chunk, faiss in itertools.product((1, 2, 4096), FAISS_CHOICES):
        pool = build_pools(
            data, FakeScorer(), k=4, chunk_size=chunk, use_faiss=faiss, progress=False
        )["q"]
        assert _ids(pool) == ["aa", "mm", "qq", "zz"]
        assert len({s for _, s in pool}) == 1


def test_k_is_capped_and_empty_entries_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    kb = {
        "red": KBEntry(id="red", text="red"),
        "empty": KBEntry(id="empty", text="  "),
        "blue": KBEntry(id="blue", text="blue"),
    }
    query = EvalQuery(id="q", image=Image.new("RGB", (8, 8), rgb("blue")), question="?")
    data = EvalDataset(name="small", queries=(query,), kb=kb)
    with caplog.at_level("WARNING"):
        pools = build_pools(data, FakeScorer(), k=20, progress=False)
    assert _ids(pools["q"]) == ["blue", "red"]
    assert "neither text nor images" in caplog.text


def test_bad_arguments_are_rejected(world: EvalDataset) -> None:
    with pytest.raises(ConfigError, match="k=0"):
        build_pools(world, FakeScorer(), k=0)
    with pytest.raises(ConfigError, match="use_faiss"):
        build_pools(world, FakeScorer(), use_faiss="sometimes")

    class PairOnly:
        name = "pairs"

        def score_pairs(self, *args: Any) -> list[float]:
            return []

    with pytest.raises(ConfigError, match="bi-encoder"):
        build_pools(world, PairOnly())


def test_faiss_requested_but_missing_names_it(
    world: EvalDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if faiss-cpu were not installed
    with pytest.raises(ImportError, match=r"region-rerank\[index\]"):
        build_pools(world, FakeScorer(), use_faiss=True, progress=False)
    # "auto" falls back to the exact torch search.
    assert build_pools(world, FakeScorer(), k=2, use_faiss="auto", progress=False)


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu (the index extra) is not installed")
def test_faiss_and_torch_search_give_the_same_pools(world: EvalDataset) -> None:
    exact = build_pools(world, FakeScorer(), k=5, use_faiss=False, progress=False)
    with_faiss = build_pools(world, FakeScorer(), k=5, use_faiss=True, progress=False)
    assert list(exact) == list(with_faiss)
    for qid in exact:
        a, b = exact[qid], with_faiss[qid]
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-5)
        # Scores agree to float rounding, so only near-ties may swap places.
        last = a[-1][1]
        assert {i for i, s in a if s > last + 1e-5} == {i for i, s in b if s > last + 1e-5}


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu (the index extra) is not installed")
def test_a_scorer_with_its_own_score_is_not_searched_by_inner_product(world: EvalDataset) -> None:
    class Reversed(FakeScorer):
        def score(self, queries: Any, candidates: Any) -> Any:
            return -(queries @ candidates.T)

    with pytest.raises(ConfigError, match="own score"):
        build_pools(world, Reversed(), k=3, use_faiss=True, progress=False)
    auto = build_pools(world, Reversed(), k=3, use_faiss="auto", progress=False)
    assert auto == build_pools(world, Reversed(), k=3, use_faiss=False, progress=False)


def test_pools_file_round_trips_through_the_loader(world: EvalDataset, tmp_path: Path) -> None:
    pools = build_pools(world, FakeScorer(), k=4, progress=False)
    path = write_pools_jsonl(pools, tmp_path / "sub" / "pools.jsonl")
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    loaded = load_pools_jsonl(path, world.kb, frozenset(q.id for q in world.queries))
    assert loaded == pools
    folder = make_world(tmp_path / "world", k=4)
    assert load_jsonl_dataset(folder).pools == build_pools(
        load_jsonl_dataset(folder), FakeScorer(), k=4, progress=False
    )


def test_pools_through_a_cache_match_and_feed_the_reranker(world: EvalDataset) -> None:
    from region_rerank.cache import EmbeddingCache
    from region_rerank.croppers.full import FullImageCropper
    from region_rerank.reranker import CroppedReranker

    cache = EmbeddingCache()
    scorer = FakeScorer()
    cached = build_pools(world, scorer, k=3, batch_size=2, progress=False, cache=cache)
    assert cached == build_pools(world, FakeScorer(), k=3, batch_size=2, progress=False)
    assert len(cache) == len(world.kb)
    calls = scorer.calls
    query = world.queries[0]
    reranker = CroppedReranker(FullImageCropper(), scorer, cache=cache)
    pool = [world.kb[kb_id].to_candidate(score) for kb_id, score in cached[query.id]]
    reranker.rerank(query.to_query(), pool)
    assert scorer.calls == calls + 1  # only the query view; the KB came from the cache
