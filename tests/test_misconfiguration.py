"""Issue 13 item 2: a component that cannot be built or loaded is a configuration error.

It raises a typed :class:`ModelLoadError` on first use in both ``on_error`` modes, instead of
logging a warning and falling back to the retrieval order for every query."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

from region_rerank import CroppedReranker, RerankerConfig
from region_rerank.errors import ConfigError, ModelLoadError, RegionRerankError
from region_rerank.factory import build_cropper
from region_rerank.testing import FakeCropper, FakeScorer
from region_rerank.types import Candidate, Query


def _query() -> Query:
    return Query(Image.new("RGB", (32, 24), (200, 30, 30)), "what is the red thing?")


def _pool() -> list[Candidate]:
    return [Candidate("a", "a red bridge"), Candidate("b", "a blue lake")]


def test_model_load_error_is_a_config_error() -> None:
    assert issubclass(ModelLoadError, ConfigError)
    assert issubclass(ModelLoadError, RegionRerankError)


@pytest.mark.parametrize("on_error", ["fallback", "raise"])
@pytest.mark.parametrize("scorer", ["clip:{missing}", "st:{missing}", "cross:{missing}"])
def test_a_scorer_that_cannot_load_raises_on_first_use(
    tmp_path: Path, on_error: str, scorer: str
) -> None:
    spec = scorer.format(missing=tmp_path / "nonexistent")
    rr = CroppedReranker(FakeCropper(None), spec, config=RerankerConfig(on_error=on_error))
    with pytest.raises(ModelLoadError, match="nonexistent"):
        rr.rerank(_query(), _pool())
    # ... and again on the next query: never a silent per-query fallback.
    with pytest.raises(ModelLoadError):
        rr.rerank_batch([_query(), _query()], [_pool(), _pool()])


@pytest.mark.parametrize("on_error", ["fallback", "raise"])
def test_a_grounding_detector_that_cannot_load_raises_on_first_use(
    tmp_path: Path, on_error: str
) -> None:
    spec = f"grounding:{tmp_path / 'nonexistent'}"
    rr = CroppedReranker(spec, FakeScorer(), config=RerankerConfig(on_error=on_error))
    with pytest.raises(ModelLoadError, match="nonexistent"):
        rr.rerank(_query(), _pool())


def test_the_default_components_offline_raise_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README defaults (grounding + clip) with no hub: a typed error, not a fallback."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rr = CroppedReranker(config=RerankerConfig(on_error="fallback"))
    start = time.perf_counter()
    with pytest.raises(ModelLoadError):
        rr.rerank(_query(), _pool())
    assert time.perf_counter() - start < 60  # no retry loop per query


def test_vlm_spec_that_cannot_load_raises_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="nonexistent"):
        build_cropper(f"vlm:{tmp_path / 'nonexistent'}")


def test_a_bad_candidate_still_costs_only_itself() -> None:
    """Loading errors raise; a candidate that fails to embed is ranked last, alone."""

    class Boom(FakeScorer):
        def embed_texts(self, texts):  # type: ignore[no-untyped-def]
            if any("poison" in t for t in texts):
                raise RuntimeError("poisoned text")
            return super().embed_texts(texts)

    rr = CroppedReranker(FakeCropper(None), Boom(), config=RerankerConfig(on_error="fallback"))
    good, bad = _pool(), [*_pool(), Candidate("p", "poison")]
    results = rr.rerank_batch([_query(), _query()], [good, bad])
    assert [r.fallback for r in results] == [False, False]
    assert results[1].ids[-1] == "p" and results[1].ranking[-1].score == float("-inf")
    assert [s.score for s in results[1].ranking[:2]] == [s.score for s in results[0].ranking]
    with pytest.raises(RuntimeError, match="poisoned"):
        CroppedReranker(FakeCropper(None), Boom(), config=RerankerConfig(on_error="raise")).rerank(
            _query(), bad
        )
