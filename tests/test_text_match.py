from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from region_rerank.croppers.text_match import TextMatchCropper, TextMatchCropperConfig
from region_rerank.errors import ConfigError
from region_rerank.proposals import grid_proposals
from region_rerank.testing import FakeScorer
from region_rerank.types import Query


def test_grid_covers_the_image_and_is_deterministic() -> None:
    boxes = grid_proposals((200, 100), scales=(0.5,), overlap=0.5)
    # side 50, step 25: x starts 0,25,...,125,150 (7), y starts 0,25,50 (3)
    assert len(boxes) == 21
    assert boxes[0].as_tuple() == (0, 0, 50, 50)
    assert boxes[-1].as_tuple() == (150, 50, 200, 100)
    assert boxes == grid_proposals((200, 100), scales=(0.5,), overlap=0.5)


@settings(max_examples=100, deadline=None)
@given(
    w=st.integers(1, 3000),
    h=st.integers(1, 3000),
    scales=st.lists(st.floats(0.05, 1.0), min_size=1, max_size=3),
    overlap=st.floats(0, 0.9),
)
def test_grid_boxes_inside(w: int, h: int, scales: list[float], overlap: float) -> None:
    boxes = grid_proposals((w, h), scales, overlap)
    assert boxes
    for b in boxes:
        assert 0 <= b.x1 < b.x2 <= w and 0 <= b.y1 < b.y2 <= h


def test_grid_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="scale"):
        grid_proposals((10, 10), scales=(0.0,))
    with pytest.raises(ConfigError, match="overlap"):
        grid_proposals((10, 10), overlap=0.95)


def _scene() -> Image.Image:
    img = Image.new("RGB", (90, 60), (0, 0, 255))
    img.paste((255, 0, 0), (60, 30, 90, 60))  # red square bottom-right
    return img


def test_picks_the_region_matching_the_question() -> None:
    cropper = TextMatchCropper(FakeScorer(), TextMatchCropperConfig(scales=(0.5,)))
    red, blue = cropper.decide_batch([Query(_scene(), "the red one"), Query(_scene(), "blue")])
    assert red.is_crop and red.box is not None
    assert red.box.x1 >= 45 and red.box.y1 >= 20  # bottom-right, where the red square is
    assert blue.is_crop and blue.box is not None and blue.box.x2 <= 60  # an all-blue region
    assert red.source == "text_match" and red.confidence is not None and red.confidence > 0


def test_margin_keeps_full_image() -> None:
    cropper = TextMatchCropper(FakeScorer(), TextMatchCropperConfig(margin=1.9))
    decision = cropper.decide(Query(_scene(), "the red one"))
    assert not decision.is_crop and "beats the full image" in (decision.reason or "")
    assert cropper.decide_batch([]) == []
