from __future__ import annotations

import pytest
from PIL import Image

from region_rerank.croppers.baselines import CenterCropper, RandomCropper
from region_rerank.errors import ConfigError
from region_rerank.factory import build_cropper
from region_rerank.types import Box, Query


def test_center_crop_box() -> None:
    d = CenterCropper(0.5).decide(Query(Image.new("RGB", (100, 60)), "q"))
    assert d.box == Box(25, 15, 75, 45) and d.image_size == (100, 60)


def test_random_crop_is_seeded_by_query_and_inside() -> None:
    img = Image.new("RGB", (100, 60))
    cropper = RandomCropper(0.4, seed=1)
    a = cropper.decide_batch([Query(img, "q", id=str(i)) for i in range(20)])
    again = cropper.decide_batch([Query(img, "q", id=str(i)) for i in range(20)])
    assert [d.box for d in a] == [d.box for d in again]
    assert len({d.box for d in a}) > 10
    for d in a:
        assert d.box is not None and d.box.x1 >= 0 and d.box.x2 <= 100 and d.box.y2 <= 60
        assert d.box.width == pytest.approx(40) and d.box.height == pytest.approx(24)
    assert RandomCropper(0.4, seed=2).decide(Query(img, "q", id="0")).box != a[0].box


def test_factory_specs_and_validation() -> None:
    assert isinstance(build_cropper("center:0.3"), CenterCropper)
    assert build_cropper("random").fraction == 0.5
    with pytest.raises(ConfigError, match="fraction"):
        CenterCropper(0.0)
