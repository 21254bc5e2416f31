"""GroundingCropper on tiny random OWL-ViT, OWLv2 and Grounding DINO checkpoints.

The checkpoints are built once per session into a temp dir and loaded through the public
constructor with a folder path, exactly as a user passes a hub id.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from region_rerank.boxes import ensure_min_size, pad_box, sanitize_box
from region_rerank.croppers.base import QueryCropper
from region_rerank.croppers.grounding import GroundingCropper, GroundingCropperConfig
from region_rerank.errors import ConfigError, CropperError, ImageLoadError, ModelLoadError
from region_rerank.types import Box, CropAction, CropDecision, Query
from tests.tiny.detectors import build_grounding_dino, build_owlv2, build_owlvit

FAMILIES = ("owlvit", "owlv2", "grounding-dino")
_BUILDERS: dict[str, Callable[[Path], Path]] = {
    "owlvit": build_owlvit,
    "owlv2": build_owlv2,
    "grounding-dino": build_grounding_dino,
}
# Everything the detector finds is a candidate: isolates the box logic from the scores.
PERMISSIVE = {"score_threshold": 0.0, "min_area_fraction": 0.0, "max_area_fraction": 1.0}
RAW = {**PERMISSIVE, "padding": 0.0, "min_crop_size": 1}


@pytest.fixture(scope="session")
def detector_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny detector, built once per test session."""
    root = tmp_path_factory.mktemp("tiny_detectors")
    return {family: build(root / family) for family, build in _BUILDERS.items()}


@pytest.fixture(scope="session")
def loaded(detector_dirs: dict[str, Path]) -> dict[str, tuple[Any, Any]]:
    """(processor, model) per family, loaded the documented way, for reference runs."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    return {
        family: (
            AutoProcessor.from_pretrained(path),
            AutoModelForZeroShotObjectDetection.from_pretrained(path).eval(),
        )
        for family, path in detector_dirs.items()
    }


def _image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


SIZES = [(120, 60), (50, 100), (77, 77)]
QUESTIONS = [
    "When was this bridge built?",
    "What is the name of the red car on the left?",
    "Who designed this building near the river?",
]


def _queries() -> list[Query]:
    return [
        Query(image=_image(w, h, i), question=q, id=str(i))
        for i, ((w, h), q) in enumerate(zip(SIZES, QUESTIONS))
    ]


def _cropper(dirs: dict[str, Path], family: str, **config: Any) -> GroundingCropper:
    """Loaded from the folder, exactly as a user loads a hub id."""
    return GroundingCropper(str(dirs[family]), config=GroundingCropperConfig(**config))


def _injected(
    loaded: dict[str, tuple[Any, Any]], family: str, query_fn: Any = None, **config: Any
) -> GroundingCropper:
    """With the session's processor and model injected (saves a reload per test)."""
    processor, model = loaded[family]
    return GroundingCropper(
        "unused",
        config=GroundingCropperConfig(**config),
        query_fn=query_fn,
        model_obj=model,
        processor=processor,
    )


def _assert_inside(decision: CropDecision, size: tuple[int, int]) -> None:
    assert decision.box is not None
    w, h = size
    b = decision.box
    assert 0.0 <= b.x1 < b.x2 <= w and 0.0 <= b.y1 < b.y2 <= h, (b, size)


# ---------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("score_threshold", 1.5),
        ("score_threshold", -0.1),
        ("text_threshold", float("nan")),
        ("query_template", "no placeholder"),
        ("query_template", "{} and {}"),
        ("query_template", "a {0} photo {}"),
        ("max_phrases", 0),
        ("max_phrases", 2.5),
        ("min_area_fraction", 1.0),
        ("max_area_fraction", 0.0),
        ("padding", -0.5),
        ("min_crop_size", 0),
        ("batch_size", 0),
        ("batch_size", True),
        ("model_type", "yolo"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=field):
        GroundingCropperConfig(**{field: value})


def test_config_area_bounds_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="min_area_fraction"):
        GroundingCropperConfig(min_area_fraction=0.5, max_area_fraction=0.4)


def test_config_family_defaults_and_overrides() -> None:
    cfg = GroundingCropperConfig()
    assert cfg.threshold_for("owlvit") == 0.1
    assert cfg.threshold_for("owlv2") == 0.2
    assert cfg.threshold_for("grounding-dino") == 0.35
    assert cfg.template_for("owlv2") == "a photo of a {}"
    assert cfg.template_for("grounding-dino") == "{}"
    custom = GroundingCropperConfig(score_threshold=0.5, query_template="an image of {}")
    assert custom.threshold_for("grounding-dino") == 0.5
    assert custom.template_for("owlvit") == "an image of {}"


def test_module_import_is_light() -> None:
    code = (
        "import sys, region_rerank.croppers.grounding as g; "
        "g.GroundingCropper('x'); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------- loading
@pytest.mark.parametrize("family", FAMILIES)
def test_loads_from_folder_and_decides_one_per_query(
    detector_dirs: dict[str, Path], family: str
) -> None:
    cropper = _cropper(detector_dirs, family, **PERMISSIVE)
    assert isinstance(cropper, QueryCropper)
    queries = _queries()
    decisions = cropper.decide_batch(queries)
    assert cropper.family == family
    assert len(decisions) == len(queries)
    for decision, (w, h) in zip(decisions, SIZES):
        # A random model still outputs boxes, and threshold 0 keeps all of them.
        assert decision.action is CropAction.REGION, decision.reason
        assert decision.image_size == (w, h)
        assert decision.source == "grounding"
        assert decision.confidence is not None and 0.0 < decision.confidence <= 1.0
        assert decision.raw_output and "phrases=" in decision.raw_output
        _assert_inside(decision, (w, h))
    alone = cropper.decide(queries[1]).box
    assert alone is not None and decisions[1].box is not None
    assert alone.as_tuple() == pytest.approx(decisions[1].box.as_tuple(), abs=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_unreachable_threshold_gives_full_with_reason(
    detector_dirs: dict[str, Path], family: str
) -> None:
    decisions = _cropper(detector_dirs, family, score_threshold=1.0).decide_batch(_queries())
    assert [d.action for d in decisions] == [CropAction.FULL] * 3
    assert [d.image_size for d in decisions] == SIZES
    for d in decisions:
        assert d.box is None and d.reason and "score_threshold=1.0" in d.reason


@pytest.mark.parametrize("family", FAMILIES)
def test_batching_does_not_change_decisions(
    loaded: dict[str, tuple[Any, Any]], family: str
) -> None:
    # The questions give 1, 1 and 2 phrases: OWL pads the shorter query lists in a batch,
    # which must not change any image's result.
    queries = _queries()
    batched = _injected(loaded, family, **PERMISSIVE, batch_size=8).decide_batch(queries)
    single = _injected(loaded, family, **PERMISSIVE, batch_size=1).decide_batch(queries)
    for a, b in zip(batched, single):
        assert a.action == b.action
        assert a.box is not None and b.box is not None
        assert a.box.as_tuple() == pytest.approx(b.box.as_tuple(), abs=1e-3)
        assert a.confidence == pytest.approx(b.confidence, abs=1e-4)


def test_grounding_dino_batches_same_size_images_identically(
    loaded: dict[str, tuple[Any, Any]],
) -> None:
    queries = [Query(image=_image(90, 70, seed=s), question=QUESTIONS[s]) for s in range(3)]
    batched = _injected(loaded, "grounding-dino", **PERMISSIVE).decide_batch(queries)
    single = [_injected(loaded, "grounding-dino", **PERMISSIVE).decide(q) for q in queries]
    for a, b in zip(batched, single):
        assert a.box is not None and b.box is not None
        assert a.box.as_tuple() == pytest.approx(b.box.as_tuple(), abs=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_query_fn_is_called_and_its_phrases_are_used(
    detector_dirs: dict[str, Path], family: str
) -> None:
    calls: list[str] = []

    def my_phrases(question: str) -> list[str]:
        calls.append(question)
        return ["zebra crossing", "  lamp\x00post  ", "", "zebra crossing"]

    cropper = GroundingCropper(
        str(detector_dirs[family]),
        config=GroundingCropperConfig(**PERMISSIVE),
        query_fn=my_phrases,
    )
    queries = _queries()
    decisions = cropper.decide_batch(queries)
    assert calls == [q.question for q in queries]
    for d in decisions:
        assert d.raw_output is not None
        assert "phrases=['zebra crossing', 'lamp post']" in d.raw_output
        assert "bridge" not in d.raw_output
    if family != "grounding-dino":  # OWL labels are the phrases themselves
        assert "'zebra crossing' " in decisions[0].raw_output or "'lamp post' " in (
            decisions[0].raw_output
        )


@pytest.mark.parametrize("family", FAMILIES)
def test_long_phrases_are_truncated_to_the_text_encoder(
    loaded: dict[str, tuple[Any, Any]], family: str
) -> None:
    # More tokens than the tiny text encoders accept (48 for OWL, 32 for Grounding DINO).
    long_phrases = ["very " * 20 + "long bridge", "another " * 15 + "tower", "x" * 300]
    cropper = _injected(loaded, family, query_fn=lambda q: long_phrases, **PERMISSIVE)
    decisions = cropper.decide_batch(_queries())
    for decision, size in zip(decisions, SIZES):
        assert decision.is_crop
        _assert_inside(decision, size)


def test_unsupported_model_type_raises_cropper_error(loaded: dict[str, tuple[Any, Any]]) -> None:
    import torch

    class NotADetector(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)
            self.config = type("Cfg", (), {"model_type": "clip"})()

    processor, _ = loaded["owlv2"]
    cropper = GroundingCropper("x", model_obj=NotADetector().eval(), processor=processor)
    with pytest.raises(CropperError, match="model_type='clip'"):
        cropper.decide(_queries()[0])


def test_query_fn_without_usable_phrase_falls_back_and_errors_are_typed(
    loaded: dict[str, tuple[Any, Any]],
) -> None:
    empty = _injected(loaded, "owlv2", query_fn=lambda q: ["", " \x01 "])
    assert empty.phrases_for("When was this bridge built?") == ["bridge"]

    def broken(question: str) -> list[str]:
        raise RuntimeError("boom")

    cropper = _injected(loaded, "owlv2", query_fn=broken)
    with pytest.raises(CropperError, match="boom"):
        cropper.decide(_queries()[0])


# ---------------------------------------------------------------------------- box frames
def _reference_box(
    processor: Any, model: Any, family: str, image: Image.Image, phrase: str, target: Any
) -> tuple[Box, float]:
    """Run the detector the way the transformers docs do; best box inside the image."""
    import torch

    w, h = image.size
    if family == "grounding-dino":
        inputs = processor(images=[image], text=[phrase + "."], return_tensors="pt")
    else:
        inputs = processor(
            images=[image], text=[["a photo of a " + phrase]], return_tensors="pt", truncation=True
        )
    with torch.inference_mode():
        outputs = model(**inputs)
    if family == "grounding-dino":
        result = processor.post_process_grounded_object_detection(
            outputs, input_ids=inputs["input_ids"], threshold=0.0, target_sizes=[target]
        )[0]
    else:
        result = processor.image_processor.post_process_object_detection(
            outputs, threshold=0.0, target_sizes=[target]
        )[0]
    pairs = sorted(zip(result["scores"].tolist(), result["boxes"].tolist()), key=lambda p: -p[0])
    for score, coords in pairs:
        box = sanitize_box(coords, (w, h))
        if box is not None:
            return box, score
    raise AssertionError("no box inside the image")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", [(130, 60), (48, 110)])
def test_box_matches_transformers_post_processing_in_original_pixels(
    loaded: dict[str, tuple[Any, Any]],
    family: str,
    size: tuple[int, int],
) -> None:
    # transformers 5 convention for all three families: target_sizes = (height, width)
    # of the original image (OWLv2's post-processing then scales by max(height, width)).
    w, h = size
    image = _image(w, h, seed=7)
    processor, model = loaded[family]
    expected, score = _reference_box(processor, model, family, image, "bridge", (h, w))
    decision = _injected(loaded, family, **RAW).decide(
        Query(image=image, question="When was this bridge built?")
    )
    assert decision.box is not None
    assert decision.box.as_tuple() == pytest.approx(expected.as_tuple(), abs=1e-3)
    assert decision.confidence == pytest.approx(score, abs=1e-5)


def test_owlv2_boxes_live_in_the_padded_square(
    loaded: dict[str, tuple[Any, Any]],
) -> None:
    """OWLv2 pads the image (bottom / right, black) to a square before detecting. Padding
    it ourselves gives pixel-identical model input, and on a square image the frame is
    unambiguous: the cropper's box on the original must be that square-frame box, clamped."""
    w, h = 130, 60
    image = _image(w, h, seed=11)
    square = Image.new("RGB", (w, w))
    square.paste(image, (0, 0))
    processor, model = loaded["owlv2"]
    a = processor(images=[image], text=[["x"]], return_tensors="pt")["pixel_values"]
    b = processor(images=[square], text=[["x"]], return_tensors="pt")["pixel_values"]
    assert a.shape == b.shape and float((a - b).abs().max()) == 0.0

    expected, _ = _reference_box(processor, model, "owlv2", square, "bridge", (w, w))
    expected = sanitize_box(expected.as_tuple(), (w, h))
    decision = _injected(loaded, "owlv2", **RAW).decide(
        Query(image=image, question="When was this bridge built?")
    )
    assert decision.box is not None and expected is not None
    assert decision.box.as_tuple() == pytest.approx(expected.as_tuple(), abs=1e-3)
    _assert_inside(decision, (w, h))
    # Scaling relative y by the image height (the OWL-ViT rule) would give another box.
    naive_y2 = expected.y2 / w * h
    assert abs(naive_y2 - decision.box.y2) > 1.0 or abs(expected.y1 / w * h - decision.box.y1) > 1.0


# ---------------------------------------------------------------------------- config effects
@pytest.mark.parametrize("family", ["owlv2", "grounding-dino"])
def test_padding_and_min_size_change_the_box_as_documented(
    loaded: dict[str, tuple[Any, Any]], family: str
) -> None:
    query = Query(image=_image(130, 60, seed=3), question="What is the red car on the left?")
    size = (130, 60)
    raw = _injected(loaded, family, **RAW).decide(query).box
    assert raw is not None
    padded = _injected(loaded, family, **{**RAW, "padding": 0.25}).decide(query).box
    assert padded == pad_box(raw, size, 0.25)
    assert padded is not None and padded.area >= raw.area
    grown = _injected(loaded, family, **{**RAW, "min_crop_size": 50}).decide(query).box
    assert grown == ensure_min_size(raw, size, 50)
    assert grown is not None and grown.width >= 50 and grown.height >= 50
    both = _injected(loaded, family, **{**RAW, "padding": 0.25, "min_crop_size": 50})
    assert both.decide(query).box == ensure_min_size(pad_box(raw, size, 0.25), size, 50)
    # Larger than the image: capped by it (60 px high image).
    huge = _injected(loaded, family, **{**RAW, "min_crop_size": 500}).decide(query)
    assert huge.box == Box(0.0, 0.0, 130.0, 60.0)


def test_area_fraction_limits_give_full_with_reason(loaded: dict[str, tuple[Any, Any]]) -> None:
    query = _queries()[0]
    whole = _injected(
        loaded, "owlvit", score_threshold=0.0, min_area_fraction=0.0, max_area_fraction=1e-4
    ).decide(query)
    assert whole.action is CropAction.FULL and whole.reason and "max_area_fraction" in whole.reason
    assert whole.confidence is not None
    tiny = _injected(
        loaded, "owlvit", score_threshold=0.0, min_area_fraction=0.99, max_area_fraction=1.0
    ).decide(query)
    assert tiny.action is CropAction.FULL and tiny.reason and "min_area_fraction" in tiny.reason


# ---------------------------------------------------------------------------- inputs
def test_bad_images_raise_image_load_error(
    loaded: dict[str, tuple[Any, Any]], tmp_path: Path
) -> None:
    cropper = _injected(loaded, "owlv2", **PERMISSIVE)
    with pytest.raises(ImageLoadError):
        cropper.decide(Query(image=str(tmp_path / "missing.jpg"), question="what is this?"))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    with pytest.raises(ImageLoadError):
        cropper.decide(Query(image=str(corrupt), question="what is this?"))
    with pytest.raises(ImageLoadError):
        cropper.decide_batch(
            [
                Query(image=_image(40, 40, 0), question="a"),
                Query(image=b"\x00garbage", question="b"),
            ]
        )


def test_images_from_files_and_odd_questions(
    loaded: dict[str, tuple[Any, Any]], tmp_path: Path
) -> None:
    path = tmp_path / "photo.jpg"
    _image(90, 45, seed=5).save(path)
    cropper = _injected(loaded, "grounding-dino", **PERMISSIVE)
    questions = ["", "x" * 100_000, "这座桥是什么时候建的\uff1f\x00\x07", "What? " * 5000]
    decisions = cropper.decide_batch([Query(image=str(path), question=q) for q in questions])
    assert len(decisions) == 4
    for d in decisions:
        assert d.image_size == (90, 45)
        if d.is_crop:
            _assert_inside(d, (90, 45))
    assert cropper.decide_batch([]) == []


def test_injected_model_and_processor_are_used_without_loading(
    loaded: dict[str, tuple[Any, Any]],
) -> None:
    processor, model = loaded["owlvit"]
    cropper = GroundingCropper(
        "not/a-real-model",
        config=GroundingCropperConfig(**PERMISSIVE),
        model_obj=model,
        processor=processor,
    )
    decision = cropper.decide(_queries()[2])
    assert cropper.family == "owlvit"
    assert decision.is_crop
    _assert_inside(decision, SIZES[2])


def test_missing_model_folder_raises_model_load_error(tmp_path: Path) -> None:
    cropper = GroundingCropper(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelLoadError, match="no-such-model"):
        cropper.decide(Query(image=_image(20, 20, 0), question="what is this dog?"))
