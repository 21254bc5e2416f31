"""Issue 13 item 1: the proposal grid is bounded for any aspect ratio (1:100000 included),
and the issue's reproducer (the light cropper on a 1 x 10000 image) finishes with a bounded
number of proposals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from region_rerank import Candidate, CroppedReranker, Query
from region_rerank.errors import ConfigError
from region_rerank.proposals import grid_proposals, max_grid_proposals

EXTREME = [(1, 100_000), (100_000, 1), (1, 10_000), (10_000, 1), (3000, 40), (40, 3000)]


@pytest.mark.parametrize("size", EXTREME, ids=lambda s: f"{s[0]}x{s[1]}")
def test_extreme_aspect_ratios_give_a_bounded_grid(size: tuple[int, int]) -> None:
    boxes = grid_proposals(size)
    assert 0 < len(boxes) <= max_grid_proposals() == 128
    w, h = size
    for b in boxes:
        assert 0 <= b.x1 < b.x2 <= w and 0 <= b.y1 < b.y2 <= h
    # The grid still covers the whole image (first box at the origin, last flush with it).
    assert min(b.x1 for b in boxes) == 0 and max(b.x2 for b in boxes) == w
    assert min(b.y1 for b in boxes) == 0 and max(b.y2 for b in boxes) == h


def test_images_up_to_the_aspect_limit_keep_square_boxes() -> None:
    for size in [(224, 224), (448, 224), (300, 200), (224, 448)]:
        boxes = grid_proposals(size)
        assert all(b.width == pytest.approx(b.height) for b in boxes)
    assert len(grid_proposals((224, 224))) == 61
    # Beyond the limit the boxes stretch along the long side only.
    stretched = grid_proposals((1000, 100), scales=(0.5,))
    assert {(b.width, b.height) for b in stretched} == {(250.0, 50.0)}


@settings(max_examples=200, deadline=None)
@given(
    w=st.integers(1, 200_000),
    h=st.integers(1, 200_000),
    scales=st.lists(st.floats(0.05, 1.0), min_size=1, max_size=3),
    overlap=st.floats(0.0, 0.9),
    max_aspect=st.floats(1.0, 8.0),
)
def test_the_bound_holds_for_any_size_and_setting(
    w: int, h: int, scales: list[float], overlap: float, max_aspect: float
) -> None:
    if max_grid_proposals(scales, overlap, max_aspect) > 20_000:
        return  # tiny scales with a large overlap: bounded too, but slow to enumerate here
    boxes = grid_proposals((w, h), scales, overlap, max_aspect)
    assert 0 < len(boxes) <= max_grid_proposals(scales, overlap, max_aspect)


def test_max_aspect_is_validated() -> None:
    with pytest.raises(ConfigError, match="max_aspect"):
        grid_proposals((10, 10), max_aspect=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(1, 10_000), (100_000, 1)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_issue_reproducer_finishes_with_bounded_proposals(size: tuple[int, int]) -> None:
    """``CroppedReranker("proposal", "demo")`` on the issue's 1 x 10000 image (30,000
    proposals and over 9 GB before the bound)."""
    rr = CroppedReranker("proposal", "demo")
    res = rr.rerank(Query(Image.new("RGB", size), "q"), [Candidate("a", "red")])
    assert not res.fallback and res.ids == ["a"]
    # raw_output: "action {chosen} of {actions}"; FULL is action 0, then the proposals.
    actions = int(str(res.decision.raw_output).split(" of ")[1].split(",")[0])
    assert actions <= max_grid_proposals() + 1
