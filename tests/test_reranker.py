"""CroppedReranker behaviour with the deterministic fakes (real reranker, real fakes)."""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from region_rerank import CroppedReranker, RerankerConfig
from region_rerank.cache import EmbeddingCache
from region_rerank.croppers.full import FullImageCropper
from region_rerank.errors import CandidateError, ConfigError, ImageLoadError, ScorerError
from region_rerank.fusion import fuse_scores, rank_candidates, view_margin
from region_rerank.testing import FakeCropper, FakeScorer
from region_rerank.types import Box, Candidate, CropDecision, Query

LEFT_HALF = (0.0, 0.0, 0.5, 1.0)


def scene() -> Image.Image:
    """Left quarter red (the target), the rest blue clutter."""
    img = Image.new("RGB", (80, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 40))
    return img


def pool() -> list[Candidate]:
    return [
        Candidate("blue", "a blue building", retrieval_score=0.9),
        Candidate("red", "a red bridge", retrieval_score=0.1),
        Candidate("green", "a green tree", retrieval_score=0.5),
    ]


def make(cropper: object = None, **cfg: object) -> CroppedReranker:
    return CroppedReranker(
        cropper=cropper or FakeCropper((0.0, 0.0, 0.25, 1.0)),
        scorer=FakeScorer(),
        config=RerankerConfig(**cfg),  # type: ignore[arg-type]
    )


def test_crop_moves_the_target_up_and_full_image_does_not() -> None:
    q = Query(scene(), "when was the bridge built?", id="q1")
    full = CroppedReranker(FullImageCropper(), FakeScorer()).rerank(q, pool())
    crop = make().rerank(q, pool())
    assert full.ids[0] == "blue"
    assert crop.ids[0] == "red"
    assert crop.decision.is_crop and crop.decision.box == Box(0, 0, 20, 40)
    assert crop.query_id == "q1" and not crop.fallback
    assert [s.rank for s in crop.ranking] == [1, 2, 3]
    assert sorted(s.input_index for s in crop.ranking) == [0, 1, 2]
    assert crop.ranking[0].score >= crop.ranking[1].score >= crop.ranking[2].score
    for stage in ("decode", "crop", "embed_query", "embed_candidates", "score", "total"):
        assert crop.timings[stage] >= 0.0


def test_max_fusion_never_below_full_and_reports_both() -> None:
    q = Query(scene(), "q")
    res = make(fusion="max").rerank(q, pool())
    # Each column is attributed to the right view and the right candidate: the full-image
    # column equals a FULL-only run, the crop column a crop-only run.
    full_only = CroppedReranker(FullImageCropper(), FakeScorer()).rerank(q, pool())
    crop_only = make().rerank(q, pool())
    full_by_id = {s.candidate.id: s.score for s in full_only.ranking}
    crop_by_id = {s.candidate.id: s.score for s in crop_only.ranking}
    for s in res.ranking:
        assert s.full_score == pytest.approx(full_by_id[s.candidate.id])
        assert s.crop_score == pytest.approx(crop_by_id[s.candidate.id])
        assert s.score == pytest.approx(max(s.full_score, s.crop_score))
    assert any(abs(s.full_score - s.crop_score) > 0.1 for s in res.ranking)  # type: ignore[operator]


@pytest.mark.parametrize("weight", [0.5, 0.2])
def test_blend_fusion_weighs_the_full_and_crop_similarities(weight: float) -> None:
    q = Query(scene(), "q")
    res = make(fusion="blend", full_weight=weight).rerank(q, pool())
    for s in res.ranking:
        assert s.full_score is not None and s.crop_score is not None
        assert s.score == pytest.approx((1 - weight) * s.crop_score + weight * s.full_score)
    assert res.ids == sorted(
        res.ids, key=lambda i: -next(s.score for s in res.ranking if s.candidate.id == i)
    )
    config = RerankerConfig(fusion="blend", full_weight=weight)
    full = CroppedReranker(FullImageCropper(), FakeScorer(), config=config)
    plain = CroppedReranker(FullImageCropper(), FakeScorer()).rerank(q, pool())
    assert full.rerank(q, pool()).ids == plain.ids  # FULL: one view, scored as the full image
    blended = fuse_scores(
        [0.2, -math.inf, 0.8], mode="blend", full_scores=[0.4, 0.9, math.nan], full_weight=weight
    )
    assert blended == [pytest.approx((1 - weight) * 0.2 + weight * 0.4), -math.inf, 0.8]
    with pytest.raises(ValueError, match="full_weight"):
        RerankerConfig(full_weight=1.5)


def test_close_margin_gives_an_ambiguous_view_the_full_image_weight() -> None:
    view, full = [0.80, 0.78, 0.10], [0.55, 0.60, 0.20]  # view margin 0.02, full prefers #2
    plain = fuse_scores(view, mode="blend", full_scores=full, full_weight=0.2)
    assert plain.index(max(plain)) == 0  # a fixed weight lets the view's 0.02 lead win
    close = fuse_scores(
        view, mode="blend", full_scores=full, full_weight=0.2, close_margin=0.05,
        close_full_weight=0.9,
    )  # fmt: skip
    assert close == [pytest.approx(0.1 * v + 0.9 * f) for v, f in zip(view, full)]
    assert close.index(max(close)) == 1
    clear = [0.80, 0.60, 0.10]  # margin 0.2 >= 0.05: the fixed weight
    assert fuse_scores(
        clear, mode="blend", full_scores=full, full_weight=0.2, close_margin=0.05
    ) == fuse_scores(clear, mode="blend", full_scores=full, full_weight=0.2)
    # the margin is over finite scores only; one finite score has nothing to tell apart
    assert view_margin([0.5, math.nan, 0.45, -math.inf]) == pytest.approx(0.05)
    assert view_margin([0.5, math.nan]) == math.inf
    for bad in ({"close_margin": -0.1}, {"close_full_weight": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RerankerConfig(**bad)  # type: ignore[arg-type]


def test_the_reranker_applies_its_close_margin() -> None:
    q = Query(scene(), "q")
    cfg = {"fusion": "blend", "full_weight": 0.2, "close_full_weight": 0.9}
    wide = make(**cfg, close_margin=10.0).rerank(q, pool())  # every view margin is below 10
    for s in wide.ranking:
        assert s.full_score is not None and s.crop_score is not None
        assert s.score == pytest.approx(0.1 * s.crop_score + 0.9 * s.full_score)
    off = make(**cfg).rerank(q, pool())
    for s in off.ranking:
        assert s.full_score is not None and s.crop_score is not None
        assert s.score == pytest.approx(0.8 * s.crop_score + 0.2 * s.full_score)


def test_mix_fusion_uses_retrieval_scores_and_tolerates_nan() -> None:
    q = Query(scene(), "q")
    cands = pool()
    only_retrieval = make(fusion="mix", mix_weight=1.0).rerank(q, cands)
    assert only_retrieval.ids == ["blue", "green", "red"]
    nan_pool = [Candidate("x", "red", retrieval_score=math.nan), *cands]
    res = make(fusion="mix", mix_weight=1.0).rerank(q, nan_pool)
    assert res.ids[:2] == ["blue", "green"] and set(res.ids[2:]) == {"x", "red"}


def test_mix_fusion_is_the_documented_weighted_sum_of_minmax_scores() -> None:
    res = make(fusion="mix", mix_weight=0.25).rerank(Query(scene(), "q"), pool())
    crop = {s.candidate.id: s.crop_score for s in res.ranking}
    lo, hi = min(crop.values()), max(crop.values())  # type: ignore[type-var]
    retrieval = {"blue": 1.0, "green": 0.5, "red": 0.0}  # minmax of 0.9, 0.5, 0.1
    for s in res.ranking:
        expected = 0.75 * (crop[s.candidate.id] - lo) / (hi - lo) + 0.25 * retrieval[s.candidate.id]
        assert s.score == pytest.approx(expected)


def test_fuse_scores_and_rank_candidates_directly() -> None:
    view = [0.2, -math.inf, 0.8, 0.2]
    assert fuse_scores(view, mode="crop") == view
    assert fuse_scores(view, mode="max", full_scores=[0.5, 0.9, 0.1, math.nan]) == [
        0.5,
        -math.inf,
        0.8,
        0.2,
    ]
    mixed = fuse_scores(view, mode="mix", retrieval_scores=[1.0, 5.0, None, 3.0], mix_weight=0.5)
    assert mixed[0] == pytest.approx(0.5 * 0.0 + 0.5 * 0.0)
    assert mixed[1] == -math.inf  # an invalid candidate stays invalid
    assert mixed[2] == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)  # missing retrieval = lowest
    assert mixed[3] == pytest.approx(0.5 * 0.0 + 0.5 * 0.5)  # retrieval 3 within [1, 5]
    with pytest.raises(ValueError, match="fusion mode"):
        fuse_scores(view, mode="avg")
    cands = [Candidate(str(i)) for i in range(5)]
    ranked = rank_candidates(cands, [0.5, math.nan, 0.9, 0.5, -math.inf], top_n=4)
    assert [s.candidate.id for s in ranked] == ["2", "0", "3", "1"]  # stable; NaN last
    assert [s.rank for s in ranked] == [1, 2, 3, 4]
    assert [s.input_index for s in ranked] == [2, 0, 3, 1]


@pytest.mark.parametrize("top_n,expected", [(None, 3), (1, 1), (0, 0), (10, 3)])
def test_top_n(top_n: int | None, expected: int) -> None:
    res = make().rerank(Query(scene(), "q"), pool(), top_n=top_n)
    assert len(res.ranking) == expected


def test_top_n_negative_is_config_error() -> None:
    with pytest.raises(ConfigError, match="top_n"):
        make().rerank(Query(scene(), "q"), pool(), top_n=-1)


def test_empty_pool_gives_empty_ranking() -> None:
    res = make().rerank(Query(scene(), "q"), [])
    assert res.ranking == () and not res.fallback


def test_contentless_and_duplicate_candidates_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    cands = [Candidate("empty"), *pool(), Candidate("red", "a red bridge")]
    with caplog.at_level(logging.WARNING):
        res = make().rerank(Query(scene(), "q"), cands)
    assert len(res.ranking) == 5
    assert res.ids[-1] == "empty" and res.ranking[-1].score == -math.inf
    assert res.ids[:2] == ["red", "red"]
    assert "no text, image or embedding" in caplog.text


def test_caller_objects_are_not_modified() -> None:
    cands = pool()
    before = list(cands)
    img = scene()
    pixels = img.tobytes()
    q = Query(img, "q")
    make().rerank(q, cands)
    assert cands == before and img.tobytes() == pixels and q.image is img


def test_candidate_cache_hits_on_same_content() -> None:
    rr = make()
    scorer = rr.scorer
    rr.rerank(Query(scene(), "q"), pool())
    calls = scorer.calls
    misses = rr.cache.misses
    rr.rerank(Query(scene(), "q"), pool())  # new objects, same content
    assert rr.cache.hits >= 3 and rr.cache.misses == misses
    assert scorer.calls == calls + 1  # only the query view was embedded again
    rr.rerank(Query(scene(), "q"), [Candidate("red", "a red bridge, rebuilt")])
    assert rr.cache.misses == misses + 1


def test_candidate_images_are_embedded_and_cached_by_content() -> None:
    rr = make()
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    cands = [Candidate("b", images=[blue]), Candidate("r", images=[red])]
    assert rr.rerank(Query(scene(), "q"), cands).ids == ["r", "b"]
    again = [Candidate("b", images=[blue.copy()]), Candidate("r", images=[red.copy()])]
    hits = rr.cache.hits
    rr.rerank(Query(scene(), "q"), again)
    assert rr.cache.hits == hits + 2


def test_shared_cache_across_rerankers() -> None:
    cache = EmbeddingCache()
    scorer = FakeScorer()
    a = CroppedReranker(FullImageCropper(), scorer, cache=cache)
    b = CroppedReranker(FakeCropper(LEFT_HALF), scorer, cache=cache)
    a.rerank(Query(scene(), "q"), pool())
    b.rerank(Query(scene(), "q"), pool())
    assert cache.hits == 3 and len(cache) == 3


def test_precomputed_embeddings_are_used() -> None:
    emb_red = FakeScorer().embed_texts(["red"])[0].tolist()
    cands = [Candidate("blue", "a blue building"), Candidate("pre", embedding=emb_red)]
    res = make().rerank(Query(scene(), "q"), cands)
    assert res.ids[0] == "pre"


def test_precomputed_embedding_dimension_mismatch() -> None:
    cands = [Candidate("a", "red"), Candidate("bad", embedding=[1.0, 2.0])]
    res = make().rerank(Query(scene(), "q"), cands)
    assert res.fallback and "2 dimensions" in (res.error or "")
    assert res.ids == ["a", "bad"]
    with pytest.raises(CandidateError):
        make(on_error="raise").rerank(Query(scene(), "q"), cands)


def test_batch_equals_sequential() -> None:
    rr = make()
    queries = [Query(scene(), "a", id="1"), Query(scene().rotate(180), "b", id="2")]
    pools = [pool(), list(reversed(pool()))]
    batched = rr.rerank_batch(queries, pools)
    single = [rr.rerank(q, p) for q, p in zip(queries, pools)]
    for b, s in zip(batched, single):
        assert b.ids == s.ids and b.decision == s.decision
        assert [x.score for x in b.ranking] == pytest.approx([x.score for x in s.ranking])


def test_bad_query_image_degrades_alone_in_fallback_mode(caplog: pytest.LogCaptureFixture) -> None:
    rr = make()
    queries = [Query(scene(), "ok", id="good"), Query(b"garbage", "bad", id="bad")]
    with caplog.at_level(logging.WARNING):
        good, bad = rr.rerank_batch(queries, [pool(), pool()])
    assert not good.fallback and good.ids[0] == "red"
    assert bad.fallback and "ImageLoadError" in (bad.error or "")
    assert bad.ids == ["blue", "red", "green"]  # original order
    assert [s.score for s in bad.ranking] == [0.9, 0.1, 0.5]  # retrieval scores kept
    assert "degraded" in caplog.text
    with pytest.raises(ImageLoadError):
        make(on_error="raise").rerank_batch(queries, [pool(), pool()])


def test_cropper_failure_keeps_full_image_in_fallback_mode() -> None:
    boom = FakeCropper(raises=RuntimeError("policy crashed"))
    res = make(boom).rerank(Query(scene(), "q"), pool())
    assert res.fallback and not res.decision.is_crop and "policy crashed" in (res.error or "")
    assert res.ids[0] == "blue"  # still scored, against the full image
    with pytest.raises(RuntimeError, match="policy crashed"):
        make(boom, on_error="raise").rerank(Query(scene(), "q"), pool())


def test_scorer_failure_keeps_original_order() -> None:
    rr = CroppedReranker(FakeCropper(LEFT_HALF), FakeScorer(fail_after=0))
    res = rr.rerank(Query(scene(), "q"), pool())
    assert res.fallback and res.ids == ["blue", "red", "green"]
    raising = CroppedReranker(
        FakeCropper(LEFT_HALF), FakeScorer(fail_after=0), config=RerankerConfig(on_error="raise")
    )
    with pytest.raises(RuntimeError, match="failure injected"):
        raising.rerank(Query(scene(), "q"), pool())


def test_given_decision_overrides_cropper() -> None:
    cropper = FakeCropper(raises=RuntimeError("must not be called"))
    oracle = CropDecision.region(Box(0, 0, 20, 40), source="oracle")
    res = make(cropper).rerank(Query(scene(), "q"), pool(), decision=oracle)
    assert res.ids[0] == "red" and res.decision.source == "oracle" and cropper.calls == 0


def test_margin_and_min_crop_size_change_the_box() -> None:
    res = make(crop_margin=0.5, min_crop_size=30).rerank(Query(scene(), "q"), pool())
    assert res.decision.box == Box(0, 0, 30, 40)


def test_malformed_fake_box_becomes_full() -> None:
    res = make(FakeCropper((0.5, 0.5, 0.2, 0.2))).rerank(Query(scene(), "q"), pool())
    assert not res.decision.is_crop and res.decision.reason == "malformed box"


def test_input_validation() -> None:
    rr = make()
    with pytest.raises(ConfigError, match="2 queries but 1"):
        rr.rerank_batch([Query(scene(), "a"), Query(scene(), "b")], [pool()])
    with pytest.raises(TypeError, match="Candidate"):
        rr.rerank(Query(scene(), "q"), ["just a string"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="Query"):
        rr.rerank_batch(["q"], [pool()])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"fusion": "avg"}, "fusion"),
        ({"on_error": "ignore"}, "on_error"),
        ({"mix_weight": 2.0}, "mix_weight"),
        ({"batch_size": 0}, "batch_size"),
        ({"top_n": -2}, "top_n"),
        ({"crop_margin": -0.1}, "crop_margin"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        RerankerConfig(**kwargs)


def test_default_components_are_lazy_and_specs_validated() -> None:
    rr = CroppedReranker()  # builds nothing (no network) until used
    assert rr._cropper is None and rr._scorer is None
    with pytest.raises(ConfigError, match="unknown scorer"):
        _ = CroppedReranker(scorer="nope").scorer
    assert isinstance(CroppedReranker(cropper="full").cropper, FullImageCropper)


# --------------------------------------------------------------------------- review fixes
class ColourPairScorer:
    """A real cross-encoder-style PairScorer: cosine of FakeScorer embeddings of the view and
    each candidate. Like CrossEncoderScorer it refuses a candidate with nothing to score."""

    name = "colour-pair"

    def __init__(self) -> None:
        self.inner = FakeScorer()
        self.seen: list[list[str]] = []

    def score_pairs(
        self, query: Query, view: Image.Image, candidates: list[Candidate], image_options=None
    ) -> list[float]:
        for cand in candidates:
            if not ((cand.text or "").strip() or cand.images):
                raise CandidateError(f"candidate {cand.id!r} has no text or image to score")
        self.seen.append([c.id for c in candidates])
        view_emb = self.inner.embed_images([view])
        cand_emb = self.inner.embed_candidates(candidates, image_options)
        return self.inner.score(view_emb, cand_emb)[0].tolist()


def test_box_outside_the_image_becomes_full_instead_of_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outside = CropDecision.region(Box(100, 0, 200, 40), source="oracle")
    with caplog.at_level(logging.WARNING):
        res = make(on_error="raise").rerank(Query(scene(), "q"), pool(), decision=outside)
    assert not res.fallback and not res.decision.is_crop
    assert "outside" in (res.decision.reason or "") and "outside" in caplog.text
    assert res.ids[0] == "blue"  # scored against the full (mostly blue) image


def test_box_partly_outside_is_clamped_in_the_reported_decision() -> None:
    partly = CropDecision.region(Box(-10, -5, 20, 400), source="oracle")
    res = make().rerank(Query(scene(), "q"), pool(), decision=partly)
    assert res.decision.box == Box(0, 0, 20, 40) and res.decision.image_size == (80, 40)
    assert res.ids[0] == "red" and not res.fallback


def test_precomputed_only_pool_with_wrong_dimension_is_a_candidate_error() -> None:
    cands = [Candidate("a", embedding=[1.0, 0.0]), Candidate("b", embedding=[0.0, 1.0])]
    with pytest.raises(CandidateError, match=r"2 dimensions.*27"):
        make(on_error="raise").rerank(Query(scene(), "q"), cands)
    res = make().rerank(Query(scene(), "q"), cands)
    assert res.fallback and "CandidateError" in (res.error or "") and res.ids == ["a", "b"]


def test_precomputed_only_pool_is_scored_against_the_view() -> None:
    scorer = FakeScorer()
    red, blue = scorer.embed_texts(["red", "blue"])
    cands = [Candidate("b", embedding=blue.tolist()), Candidate("r", embedding=red.numpy())]
    res = make().rerank(Query(scene(), "q"), cands)
    assert res.ids == ["r", "b"] and not res.fallback


def test_pair_scorer_ranks_contentless_candidates_last_without_degrading(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scorer = ColourPairScorer()
    rr = CroppedReranker(FakeCropper((0.0, 0.0, 0.25, 1.0)), scorer)
    cands = [pool()[0], Candidate("empty"), Candidate("pre", embedding=[1.0] * 27), pool()[1]]
    with caplog.at_level(logging.WARNING):
        res = rr.rerank(Query(scene(), "q"), cands)
    assert not res.fallback, res.error
    assert res.ids[:2] == ["red", "blue"] and set(res.ids[2:]) == {"empty", "pre"}
    assert all(s.score == -math.inf for s in res.ranking[2:])
    assert scorer.seen == [["blue", "red"]]  # only scorable candidates reach the model
    assert "cannot be scored" in caplog.text


@pytest.mark.parametrize("kwargs", [{"top_n": 1.5}, {"batch_size": 2.0}, {"top_n": True}])
def test_integer_settings_reject_non_integers(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        RerankerConfig(**kwargs)


def test_top_n_argument_must_be_an_integer() -> None:
    with pytest.raises(ConfigError, match="top_n"):
        make().rerank(Query(scene(), "q"), pool(), top_n=1.5)  # type: ignore[arg-type]


def test_an_unbuildable_component_raises_even_in_fallback_mode() -> None:
    """A wrong spec is a configuration error, not a bad query: it must not be retried (and
    swallowed) once per query."""
    rr = CroppedReranker(cropper="no-such-cropper", scorer=FakeScorer())
    with pytest.raises(ConfigError, match="unknown cropper"):
        rr.rerank(Query(scene(), "q"), pool())
    rr = CroppedReranker(cropper=FakeCropper(LEFT_HALF), scorer="no-such-scorer")
    with pytest.raises(ConfigError, match="unknown scorer"):
        rr.rerank_batch([Query(scene(), "a"), Query(scene(), "b")], [pool(), pool()])


def test_default_components_are_built_once_under_concurrent_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import region_rerank.factory as factory

    built: list[str] = []
    real_scorer, real_cropper = factory.build_scorer, factory.build_cropper

    def slow_scorer(*args: object, **kwargs: object) -> object:
        built.append("scorer")
        time.sleep(0.05)  # widen the window in which a second thread could build again
        return real_scorer(*args, **kwargs)  # type: ignore[arg-type]

    def slow_cropper(*args: object, **kwargs: object) -> object:
        built.append("cropper")
        time.sleep(0.05)
        return real_cropper(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(factory, "build_scorer", slow_scorer)
    monkeypatch.setattr(factory, "build_cropper", slow_cropper)
    rr = CroppedReranker(cropper="full", scorer="fake")
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda _: rr.rerank(Query(scene(), "q"), pool()), range(8)))
    assert sorted(built) == ["cropper", "scorer"]
    assert all(r.ids == results[0].ids and not r.fallback for r in results)


def test_concurrent_reranks_match_sequential_results() -> None:
    rr = make(fusion="max")
    cases = [
        (Query(scene().rotate(90 * (i % 4), expand=True), f"q{i}", id=str(i)), pool()[i % 3 :])
        for i in range(24)
    ]
    expected = [rr.rerank(q, p) for q, p in cases]
    rr.cache.clear()
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda qp: rr.rerank(*qp), cases))
    for e, g in zip(expected, got):
        assert g.ids == e.ids and g.decision == e.decision and not g.fallback
        assert [s.score for s in g.ranking] == pytest.approx([s.score for s in e.ranking])


class _WrongDimScorer(FakeScorer):
    """A broken bi-encoder whose candidate embeddings do not match its image embeddings."""

    def embed_candidates(self, candidates, image_options=None):  # type: ignore[no-untyped-def]
        return super().embed_candidates(candidates, image_options)[:, :5]


def test_scorer_with_inconsistent_dimensions_is_a_scorer_error() -> None:
    rr = CroppedReranker(
        FakeCropper(LEFT_HALF), _WrongDimScorer(), config=RerankerConfig(on_error="raise")
    )
    with pytest.raises(ScorerError, match=r"shape \(3, 5\).*27 dimensions"):
        rr.rerank(Query(scene(), "q"), pool())
