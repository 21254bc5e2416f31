from __future__ import annotations

import math

import pytest

from region_rerank.errors import CandidateError, InvalidBoxError
from region_rerank.types import Box, Candidate, CropAction, CropDecision, Query, RerankResult


def test_box_validates_and_exposes_geometry() -> None:
    box = Box(1, 2, 11, 7)
    assert (box.width, box.height, box.area) == (10.0, 5.0, 50.0)
    assert box.as_tuple() == (1.0, 2.0, 11.0, 7.0)
    assert Box(0.2, 0.5, 3.1, 4.0).as_int_tuple() == (0, 0, 4, 4)


@pytest.mark.parametrize(
    "coords",
    [(0, 0, 0, 5), (5, 0, 1, 5), (0, 0, math.nan, 5), (0, 0, math.inf, 5), (0, 0, "a", 1)],
)
def test_box_rejects_malformed(coords: tuple) -> None:
    with pytest.raises(InvalidBoxError):
        Box(*coords)


def test_box_is_frozen() -> None:
    box = Box(0, 0, 1, 1)
    with pytest.raises(AttributeError):
        box.x1 = 3  # type: ignore[misc]


def test_candidate_wraps_single_image_and_freezes_metadata() -> None:
    meta = {"source": "kb"}
    cand = Candidate(id=7, text="t", images="img.png", metadata=meta)  # type: ignore[arg-type]
    assert cand.id == "7"
    assert cand.images == ("img.png",)
    with pytest.raises(TypeError):
        cand.metadata["x"] = 1  # type: ignore[index]
    meta["later"] = True
    assert "later" not in cand.metadata, "candidate must not alias the caller's dict"


def test_candidate_content_and_errors() -> None:
    assert not Candidate("a").has_content
    assert not Candidate("a", text="   ").has_content
    assert Candidate("a", embedding=[1.0]).has_content
    with pytest.raises(CandidateError):
        Candidate("a", text=3)  # type: ignore[arg-type]


def test_query_requires_image_and_str_question() -> None:
    with pytest.raises(TypeError):
        Query(image=None, question="q")
    with pytest.raises(TypeError):
        Query(image="x.png", question=None)  # type: ignore[arg-type]


def test_crop_decision_invariants() -> None:
    full = CropDecision.full(image_size=(10, 10))
    assert full.action is CropAction.FULL and not full.is_crop and full.area_fraction == 1.0
    region = CropDecision.region(Box(0, 0, 5, 4), image_size=(10, 10), source="x")
    assert region.is_crop and region.area_fraction == pytest.approx(0.2)
    assert region.to_dict()["box"] == [0.0, 0.0, 5.0, 4.0]
    assert CropDecision(action="FULL").action is CropAction.FULL  # type: ignore[arg-type]
    with pytest.raises(InvalidBoxError):
        CropDecision(action=CropAction.REGION)
    with pytest.raises(InvalidBoxError):
        CropDecision(action=CropAction.FULL, box=Box(0, 0, 1, 1))


def test_rerank_result_freezes_timings() -> None:
    timings = {"total": 1.0}
    res = RerankResult("q", [], CropDecision.full(), timings)
    timings["total"] = 2.0
    assert res.timings["total"] == 1.0
    assert res.ranking == () and res.ids == [] and res.candidates == []
