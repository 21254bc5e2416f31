"""RegionRetriever: the crop decision drives the first-stage search and the re-rank."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

import region_rerank.reranker as reranker_module
from region_rerank import Candidate, CandidateIndex, CroppedReranker, Query, RerankerConfig
from region_rerank.boxes import CoordFrame
from region_rerank.errors import ConfigError, CropperError
from region_rerank.index import faiss_available
from region_rerank.retrieval import RegionRetriever, reciprocal_rank_fusion
from region_rerank.testing import COLOR_WORDS, FakeCropper, FakeScorer
from region_rerank.types import CropDecision

COLOURS = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange")
GREY = (128, 128, 128)
#: (big distractor, small target, target box)
SCENES = (
    ("red", "green", (70, 70, 90, 90)),
    ("blue", "yellow", (66, 8, 90, 30)),
    ("green", "magenta", (8, 70, 30, 92)),
    ("cyan", "orange", (66, 70, 86, 90)),
)


def _rgb(name: str) -> tuple[int, int, int]:
    r, g, b = COLOR_WORDS[name]
    return (min(255, r * 128), min(255, g * 128), min(255, b * 128))


def _scene(distractor: str, target: str, box: tuple[int, int, int, int]) -> Image.Image:
    img = Image.new("RGB", (96, 96), GREY)
    img.paste(_rgb(distractor), (4, 4, 64, 64))
    img.paste(_rgb(target), box)
    return img


@pytest.fixture
def kb() -> dict[str, Candidate]:
    return {
        f"kb_{c}": Candidate(f"kb_{c}", f"{c} entity", images=[Image.new("RGB", (16, 16), _rgb(c))])
        for c in COLOURS
    }


@pytest.fixture
def queries() -> list[Query]:
    return [Query(_scene(d, t, b), "what is the small thing?", id=t) for d, t, b in SCENES]


def _oracle() -> FakeCropper:
    boxes = {t: b for _, t, b in SCENES}
    return FakeCropper(lambda q: boxes[q.id], frame=CoordFrame.PIXELS)


def _retriever(kb: dict[str, Candidate], cropper: Any = None, **kw: Any) -> RegionRetriever:
    rr = CroppedReranker(cropper or _oracle(), FakeScorer(), config=kw.pop("config", None))
    index = CandidateIndex.build(kb.values(), rr.scorer, progress=False)
    return RegionRetriever(rr, index, kb, **kw)


def test_the_view_brings_back_what_the_full_image_misses(
    kb: dict[str, Candidate], queries: list[Query]
) -> None:
    full = _retriever(kb, mode="full", k=1).retrieve_batch(queries)
    view = _retriever(kb, mode="view", k=1).retrieve_batch(queries)
    for (distractor, target, _), f, v in zip(SCENES, full, view):
        assert f.ids == [f"kb_{distractor}"]
        assert v.ids == [f"kb_{target}"]
        assert v.decision.box is not None and not v.fallback


def test_fused_search_keeps_both_and_reranks_with_the_crop(
    kb: dict[str, Candidate], queries: list[Query]
) -> None:
    results = _retriever(kb, mode="fused", k=2).retrieve_batch(queries)
    for (distractor, target, _), r in zip(SCENES, results):
        assert set(r.ids) == {f"kb_{distractor}", f"kb_{target}"}
        assert r.ids[0] == f"kb_{target}"  # the re-rank scores against the crop
        assert all(s.candidate.retrieval_score is not None for s in r.ranking)


def test_one_decision_and_one_decode_per_query(
    kb: dict[str, Candidate], queries: list[Query], monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[Any] = []
    real = reranker_module.load_image

    def counting(image: Any, options: Any = None) -> Any:
        decoded.append(image)
        return real(image, options)

    monkeypatch.setattr(reranker_module, "load_image", counting)
    boxes = {t: b for _, t, b in SCENES}
    asked: list[str] = []

    def decide(query: Query) -> Any:
        asked.append(str(query.id))
        return boxes[str(query.id)]

    retriever = _retriever(kb, FakeCropper(decide, frame=CoordFrame.PIXELS), mode="fused", k=3)
    retriever.retrieve_batch(queries)
    assert sorted(asked) == sorted(q.id for q in queries if q.id)  # each decided once
    assert len(decoded) == len(queries)  # each image decoded once, for search and re-rank


def test_batch_equals_one_by_one(kb: dict[str, Candidate], queries: list[Query]) -> None:
    retriever = _retriever(kb, mode="view", k=3)
    batch = retriever.retrieve_batch(queries)
    single = [retriever.retrieve(q) for q in queries]
    for a, b in zip(batch, single):
        assert a.ids == b.ids and a.decision.box == b.decision.box
        assert [s.score for s in a.ranking] == pytest.approx([s.score for s in b.ranking], abs=1e-5)


def test_given_decisions_skip_the_cropper(kb: dict[str, Candidate], queries: list[Query]) -> None:
    cropper = FakeCropper()
    retriever = _retriever(kb, cropper, mode="view", k=1)
    decisions = [CropDecision.region(b) for _, _, b in SCENES]
    results = retriever.retrieve_batch(queries, decisions=decisions)
    assert cropper.calls == 0
    assert [r.ids for r in results] == [[f"kb_{t}"] for _, t, _ in SCENES]


def test_the_callers_objects_are_unchanged(kb: dict[str, Candidate], queries: list[Query]) -> None:
    before = {k: (c.retrieval_score, c.text) for k, c in kb.items()}
    result = _retriever(kb, mode="view", k=2).retrieve(queries[0])
    assert {k: (c.retrieval_score, c.text) for k, c in kb.items()} == before
    assert all(s.candidate is not kb[s.candidate.id] for s in result.ranking)


def test_a_failing_cropper_falls_back_to_the_full_image_search(
    kb: dict[str, Candidate], queries: list[Query]
) -> None:
    broken = FakeCropper(raises=CropperError("boom"))
    results = _retriever(kb, broken, mode="view", k=1).retrieve_batch(queries)
    for (distractor, _, _), r in zip(SCENES, results):
        assert r.fallback and "boom" in (r.error or "")
        assert r.ids == [f"kb_{distractor}"]  # searched with the full image
    strict = _retriever(kb, broken, mode="view", k=1, config=RerankerConfig(on_error="raise"))
    with pytest.raises(CropperError, match="boom"):
        strict.retrieve_batch(queries)


def test_an_index_of_another_scorer_is_refused(
    kb: dict[str, Candidate], queries: list[Query]
) -> None:
    class Other(FakeScorer):
        name = "other"

    index = CandidateIndex.build(kb.values(), Other(), progress=False)
    retriever = RegionRetriever(CroppedReranker(_oracle(), FakeScorer()), index, kb)
    with pytest.raises(ConfigError, match="built with scorer 'other'"):
        retriever.retrieve_batch(queries)


def test_bad_settings_are_config_errors(kb: dict[str, Candidate]) -> None:
    with pytest.raises(ConfigError, match="mode"):
        _retriever(kb, mode="nearest")
    with pytest.raises(ConfigError, match="k"):
        _retriever(kb, k=0)


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu (the index extra) is not installed")
def test_faiss_search_drives_the_retriever(
    kb: dict[str, Candidate], queries: list[Query], monkeypatch: pytest.MonkeyPatch
) -> None:
    import region_rerank.index as index_module

    exact = _retriever(kb, mode="fused", k=2).retrieve_batch(queries)
    searched: list[str] = []
    real = index_module.faiss_search

    def spy(index: Any, *args: Any, **kw: Any) -> Any:
        searched.append(type(index).__name__)
        return real(index, *args, **kw)

    monkeypatch.setattr(index_module, "faiss_search", spy)
    options = {"faiss_index": "HNSW4,Flat", "faiss_params": {"efSearch": 64}}
    fast = _retriever(kb, mode="fused", k=2, use_faiss=True, **options).retrieve_batch(queries)
    assert searched and set(searched) == {"IndexHNSWFlat"}  # FAISS really searched
    # k=2: the target and the distractor; the other entries tie at 0 with these histograms
    assert [r.ids for r in fast] == [r.ids for r in exact]

    # FAISS ranks by inner product: a scorer with its own score is refused, not ignored
    class Scaled(FakeScorer):
        def score(self, queries: Any, candidates: Any) -> Any:
            return -(queries @ candidates.T)

    index = CandidateIndex.build(kb.values(), Scaled(), progress=False)
    query = Scaled().embed_texts(["green"])
    with pytest.raises(ConfigError, match="own score"):
        index.search(query, 2, scorer=Scaled(), use_faiss=True)
    mine = index.search(query, 2, scorer=Scaled(), use_faiss="auto")  # its own score, exactly
    assert mine == index.search(query, 2, scorer=Scaled())
    with pytest.raises(ConfigError, match="apply to a CandidateIndex"):
        RegionRetriever(
            CroppedReranker(_oracle(), FakeScorer()), _Store(index), kb, faiss_index="HNSW4,Flat"
        )


class _Store:
    """A search index that is not a CandidateIndex (as a vector-store adapter is)."""

    def __init__(self, index: CandidateIndex) -> None:
        self.index = index

    def search(self, queries: Any, k: int, *, scorer: Any = None, use_faiss: Any = False) -> Any:
        return self.index.search(queries, k)

    def check_scorer(self, scorer: Any) -> None:
        return None


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([[("a", 0.9), ("b", 0.8)], [("b", 0.7), ("c", 0.6)]], k=3)
    assert [c for c, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


def _dataset() -> Any:
    from region_rerank.eval._schema import EvalDataset, EvalQuery, KBEntry
    from region_rerank.types import Box

    kb = {
        f"kb_{c}": KBEntry(f"kb_{c}", f"{c} entity", (Image.new("RGB", (16, 16), _rgb(c)),))
        for c in COLOURS
    }
    queries = tuple(
        EvalQuery(t, _scene(d, t, b), "what is the small thing?", frozenset({f"kb_{t}"}), Box(*b))
        for d, t, b in SCENES
    )
    return EvalDataset(name="scenes", queries=queries, kb=kb)


def test_eval_gives_each_method_its_own_first_stage(tmp_path: Any) -> None:
    from region_rerank.eval.runner import run_eval

    data = _dataset()
    view = run_eval(
        data,
        {"oracle": "oracle"},
        FakeScorer(),
        tmp_path / "view",
        pool_k=1,
        retrieve="view",
        n_examples=0,
        progress=False,
    )
    assert view["full"]["coverage"] == 0.0  # the whole image finds the big distractor
    assert view["oracle"]["coverage"] == 1.0  # the crop finds the target
    assert view["oracle"]["R@1"] == 1.0
    full = run_eval(
        data,
        {"oracle": "oracle"},
        FakeScorer(),
        tmp_path / "full",
        pool_k=1,
        retrieve="full",
        n_examples=0,
        progress=False,
    )
    assert full["oracle"]["coverage"] == full["full"]["coverage"] == 0.0
    with pytest.raises(ConfigError, match="different run"):
        run_eval(
            data,
            {"oracle": "oracle"},
            FakeScorer(),
            tmp_path / "view",
            pool_k=1,
            retrieve="fused",
            n_examples=0,
            progress=False,
        )
    with pytest.raises(ConfigError, match="retrieve"):
        run_eval(data, {}, FakeScorer(), tmp_path / "bad", retrieve="nearest", progress=False)
