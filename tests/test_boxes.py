from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from region_rerank.boxes import (
    CoordFrame,
    clamp_box,
    ensure_min_size,
    from_pixels,
    iou,
    pad_box,
    qwen_smart_resize,
    sanitize_box,
    to_pixels,
)
from region_rerank.errors import ConfigError
from region_rerank.types import Box


def test_clamp_box_clips_to_image() -> None:
    assert clamp_box((-5, -5, 50, 30), (40, 20)) == Box(0, 0, 40, 20)
    assert clamp_box((45, 0, 60, 10), (40, 20)) is None  # entirely outside -> empty
    assert clamp_box((10, 10, 5, 15), (40, 20)) is None  # inverted is malformed
    assert clamp_box((1, 2, 3), (40, 20)) is None
    assert clamp_box((0, 0, math.nan, 3), (40, 20)) is None


def test_sanitize_box_min_size_and_frames() -> None:
    assert sanitize_box((0, 0, 0.5, 0.5), (40, 20), min_size=3) is None
    assert sanitize_box((0, 0, 500, 1000), (40, 20), frame=CoordFrame.NORM_1000) == Box(
        0, 0, 20, 20
    )
    assert sanitize_box((0.25, 0.5, 0.75, 1.0), (40, 20), frame=CoordFrame.NORM_1) == Box(
        10, 10, 30, 20
    )


def test_qwen25_frame_maps_resized_pixels_back() -> None:
    # 1000x500 original; Qwen2.5-VL input 1008x504 (multiples of 28)
    assert qwen_smart_resize(500, 1000) == (504, 1008)
    pixels = to_pixels((504, 252, 1008, 504), CoordFrame.QWEN25_RESIZED, (1000, 500))
    assert pixels == pytest.approx((500.0, 250.0, 1000.0, 500.0))
    explicit = to_pixels(
        (100, 100, 200, 200), CoordFrame.QWEN25_RESIZED, (1000, 500), resized_size=(2000, 1000)
    )
    assert explicit == pytest.approx((50.0, 50.0, 100.0, 100.0))


def test_smart_resize_matches_transformers() -> None:
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    for h, w in [(500, 1000), (37, 400), (3000, 4000), (28, 28), (60, 9000), (1, 150)]:
        kwargs = {"factor": 28, "min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280}
        assert qwen_smart_resize(h, w, **kwargs) == tuple(smart_resize(h, w, **kwargs)), (h, w)


def test_from_pixels_inverts_to_pixels() -> None:
    for frame in CoordFrame:
        there = from_pixels(Box(10, 20, 30, 40), frame, (640, 480))
        back = to_pixels(there, frame, (640, 480))
        assert back == pytest.approx((10, 20, 30, 40))
    with pytest.raises(ConfigError):
        from_pixels((1, 2), CoordFrame.PIXELS, (10, 10))


def test_pad_and_min_size() -> None:
    box = Box(10, 10, 20, 20)
    assert pad_box(box, (100, 100), 0.5) == Box(5, 5, 25, 25)
    assert pad_box(Box(0, 0, 10, 10), (12, 12), 1.0) == Box(0, 0, 12, 12)
    grown = ensure_min_size(Box(0, 0, 4, 4), (100, 50), 32)
    assert grown == Box(0, 0, 32, 32)
    capped = ensure_min_size(Box(90, 40, 100, 50), (100, 50), 80)
    assert capped == Box(20, 0, 100, 50)  # shifted inside, height capped at the image
    with pytest.raises(ConfigError):
        pad_box(box, (100, 100), -1)


def test_iou() -> None:
    a, b = Box(0, 0, 10, 10), Box(5, 0, 15, 10)
    assert iou(a, b) == pytest.approx(50 / 150)
    assert iou(a, a) == 1.0
    assert iou(a, Box(20, 20, 30, 30)) == 0.0


def test_bad_image_size_is_config_error() -> None:
    with pytest.raises(ConfigError):
        clamp_box((0, 0, 1, 1), (0, 10))


finite_or_not = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.text(max_size=3),
    st.none(),
)


@settings(max_examples=400, deadline=None)
@given(
    coords=st.lists(finite_or_not, min_size=0, max_size=6),
    w=st.integers(1, 5000),
    h=st.integers(1, 5000),
    frame=st.sampled_from(list(CoordFrame)),
    min_size=st.floats(0, 50),
)
def test_sanitize_box_fuzz_never_raises_and_stays_inside(
    coords: list, w: int, h: int, frame: CoordFrame, min_size: float
) -> None:
    box = sanitize_box(coords, (w, h), frame=frame, min_size=min_size)
    if box is not None:
        assert 0 <= box.x1 < box.x2 <= w
        assert 0 <= box.y1 < box.y2 <= h
        assert box.width >= min_size and box.height >= min_size


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(0, 99),
    y=st.floats(0, 99),
    bw=st.floats(0.01, 100),
    bh=st.floats(0.01, 100),
    margin=st.floats(0, 3),
    min_size=st.floats(0, 150),
)
def test_pad_and_min_size_fuzz_stay_inside(
    x: float, y: float, bw: float, bh: float, margin: float, min_size: float
) -> None:
    box = clamp_box((x, y, x + bw, y + bh), (100, 100))
    if box is None:
        return
    out = ensure_min_size(pad_box(box, (100, 100), margin), (100, 100), min_size)
    assert 0 <= out.x1 < out.x2 <= 100 + 1e-9 and 0 <= out.y1 < out.y2 <= 100 + 1e-9
    assert out.width >= min(100, min_size) - 1e-6
