"""Issue 13 item 1 and the per-query work bounds: every cropper finishes on any aspect ratio
(up to 1:100000 both ways) with a valid decision, and the detector never sees more than its
pixel bound (the OWLv2 processor pads to a square of the longer side: a 1 x 10000 image used
to cost GBs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from region_rerank import CroppedReranker, RerankerConfig
from region_rerank.croppers.grounding import GroundingCropper, GroundingCropperConfig
from region_rerank.croppers.vlm import VLMCropper, VLMCropperConfig
from region_rerank.factory import build_cropper, build_scorer
from region_rerank.types import Candidate, CropDecision, Query
from tests.tiny.detectors import build_grounding_dino, build_owlv2
from tests.tiny.qwen import build_tiny_qwen

EXTREME = [(1, 100_000), (100_000, 1), (3000, 40), (40, 3000), (1, 2), (2000, 150)]


@pytest.fixture(scope="module")
def croppers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("bounds")
    demo = build_scorer("demo")
    return {
        "full": build_cropper("full"),
        "center": build_cropper("center"),
        "random": build_cropper("random"),
        "text_match": build_cropper("text_match", scorer=demo),
        "proposal": build_cropper("proposal", scorer=demo),
        "owlv2": GroundingCropper(str(build_owlv2(root / "owlv2"))),
        "grounding-dino": GroundingCropper(str(build_grounding_dino(root / "dino"))),
        "vlm": VLMCropper(
            str(build_tiny_qwen("qwen2_5_vl", root / "qwen")),
            config=VLMCropperConfig(max_new_tokens=8),
        ),
    }


def _valid(decision: CropDecision, size: tuple[int, int]) -> bool:
    if decision.box is None:
        return True
    b = decision.box
    return 0 <= b.x1 < b.x2 <= size[0] and 0 <= b.y1 < b.y2 <= size[1]


@pytest.mark.parametrize("size", EXTREME, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(
    "name",
    ["full", "center", "random", "text_match", "proposal", "owlv2", "grounding-dino", "vlm"],
)
def test_every_cropper_decides_on_any_aspect_ratio(
    croppers: dict[str, Any], name: str, size: tuple[int, int]
) -> None:
    image = Image.new("RGB", size, (120, 60, 30))
    decision = croppers[name].decide(Query(image, "what is the red thing on the left?"))
    assert _valid(decision, size)


def test_the_detector_sees_at_most_max_side_pixels(
    croppers: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cropper: GroundingCropper = croppers["owlv2"]
    seen: list[tuple[int, int]] = []
    original = cropper._detect

    def spy(images: list[Any], *args: Any, **kwargs: Any) -> Any:
        seen.extend(im.size for im in images)
        return original(images, *args, **kwargs)

    monkeypatch.setattr(cropper, "_detect", spy)
    cropper.decide_batch(
        [
            Query(Image.new("RGB", (4000, 600)), "the tower?"),
            Query(Image.new("RGB", (64, 48)), "the dog?"),
            Query(Image.new("RGB", (1, 10_000)), "the pole?"),  # beyond max_aspect: FULL
        ]
    )
    assert seen == [(1333, 200), (64, 48)]


def test_elongated_images_get_full_with_a_reason(croppers: dict[str, Any]) -> None:
    decision = croppers["owlv2"].decide(Query(Image.new("RGB", (1, 10_000)), "the pole?"))
    assert decision.box is None and "max_aspect" in str(decision.reason)


def test_max_side_and_max_aspect_are_validated() -> None:
    from region_rerank.errors import ConfigError

    with pytest.raises(ConfigError, match="max_side"):
        GroundingCropperConfig(max_side=0)
    with pytest.raises(ConfigError, match="max_aspect"):
        GroundingCropperConfig(max_aspect=0.5)


def test_the_reranker_with_a_detector_on_the_issue_reproducer(
    croppers: dict[str, Any], tmp_path: Path
) -> None:
    rr = CroppedReranker(croppers["owlv2"], "demo", config=RerankerConfig(on_error="raise"))
    res = rr.rerank(Query(Image.new("RGB", (1, 10_000)), "q"), [Candidate("a", "red")])
    assert res.ids == ["a"] and not res.fallback


def test_large_downscales_pre_reduce_within_one_grey_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bounded resize work on strips: block-averaging first stays within 1/255 of the
    direct antialiased resize on a smooth image."""
    import torch
    import torch.nn.functional as F

    import region_rerank.images as images

    coarse = torch.linspace(0, 255, 3 * 40 * 3).reshape(1, 3, 40, 3)
    strip = F.interpolate(coarse, size=(4000, 60), mode="bilinear").squeeze(0).to(torch.uint8)
    reduced = images.crop_resize(strip, [None], (32, 32), interpolation="bilinear")
    monkeypatch.setattr(images, "REDUCING_GAP", 10**9)
    direct = images.crop_resize(strip, [None], (32, 32), interpolation="bilinear")
    assert reduced.shape == direct.shape == (1, 3, 32, 32)
    assert float((reduced - direct).abs().max()) <= 1 / 255
