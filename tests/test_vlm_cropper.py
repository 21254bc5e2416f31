"""VLMCropper on tiny random Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoints loaded from folders.

The checkpoints are built once per session into a temporary folder and loaded through the
public constructor, exactly as a hub id would be (``from_pretrained`` with the hub offline).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from region_rerank.boxes import CoordFrame, qwen_smart_resize
from region_rerank.croppers.base import QueryCropper
from region_rerank.croppers.vlm import DEFAULT_PROMPT, VLMCropper, VLMCropperConfig
from region_rerank.croppers.vlm_output import decision_from_output
from region_rerank.errors import ConfigError
from region_rerank.model_options import ModelOptions
from region_rerank.types import Box, CropAction, CropDecision, Query
from tests.tiny.qwen import FAMILIES, build_tiny_qwen

EXPECTED_FRAME = {
    "qwen2_vl": CoordFrame.NORM_1000,
    "qwen2_5_vl": CoordFrame.QWEN25_RESIZED,
    "qwen3_vl": CoordFrame.NORM_1000,
}
FAST = VLMCropperConfig(max_new_tokens=12)
#: The byte-level tiny tokenizer spends one token per byte: a short prompt keeps tests quick.
SHORT = VLMCropperConfig(max_new_tokens=12, prompt_template="Crop for: {question}")


@pytest.fixture(scope="session")
def tiny_qwen_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_qwen")
    return {family: build_tiny_qwen(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="module")
def croppers(tiny_qwen_dirs: dict[str, Path]) -> dict[str, VLMCropper]:
    return {family: VLMCropper(str(path), config=FAST) for family, path in tiny_qwen_dirs.items()}


@pytest.fixture(scope="module")
def queries(tmp_path_factory: pytest.TempPathFactory) -> list[Query]:
    """Three images of different sizes, given as a PIL image, a file path and an array."""
    scene = Image.new("RGB", (120, 80), (200, 200, 200))
    scene.paste((220, 30, 30), (70, 20, 110, 60))
    path = tmp_path_factory.mktemp("imgs") / "tall.png"
    Image.new("RGB", (90, 160), (20, 40, 200)).save(path)
    square = np.zeros((64, 64, 3), dtype=np.uint8)
    square[16:48, 16:48] = (0, 180, 0)
    return [
        Query(scene, "What is the red object on the right?", id="scene"),
        Query(str(path), "Who painted this?", id="tall"),
        Query(square, "Which plant is this?", id="square"),
    ]


def _short(cropper: VLMCropper) -> VLMCropper:
    """The same loaded model and processor behind a cropper with the short prompt."""
    return VLMCropper(
        cropper.model_name, model_obj=cropper.model, processor=cropper.processor, config=SHORT
    )


def _check_decision(decision: CropDecision, size: tuple[int, int]) -> None:
    assert isinstance(decision, CropDecision)
    assert decision.source == "vlm"
    assert decision.image_size == size
    assert isinstance(decision.raw_output, str) and decision.raw_output
    if decision.action is CropAction.REGION:
        assert decision.box is not None
        assert 0 <= decision.box.x1 < decision.box.x2 <= size[0]
        assert 0 <= decision.box.y1 < decision.box.y2 <= size[1]
    else:
        assert decision.box is None and decision.reason


# ------------------------------------------------------------------- loading
@pytest.mark.parametrize("family", FAMILIES)
def test_loads_each_family_from_a_folder_like_a_hub_id(
    family: str, tiny_qwen_dirs: dict[str, Path]
) -> None:
    cropper = VLMCropper(str(tiny_qwen_dirs[family]))
    assert isinstance(cropper, QueryCropper)
    assert cropper.model_type == family
    assert cropper.frame is EXPECTED_FRAME[family]
    assert cropper.config.max_new_tokens == 256 and cropper.config.do_sample is False
    assert not cropper.model.training
    assert cropper.device.type == "cpu"
    assert family in repr(cropper)


@pytest.mark.parametrize("family", FAMILIES)
def test_decide_batch_returns_one_valid_decision_per_query(
    family: str, croppers: dict[str, VLMCropper], queries: list[Query]
) -> None:
    decisions = croppers[family].decide_batch(queries)
    assert len(decisions) == len(queries)
    for decision, size in zip(decisions, [(120, 80), (90, 160), (64, 64)]):
        _check_decision(decision, size)
    single = croppers[family].decide(queries[0])
    assert single.raw_output == decisions[0].raw_output


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_greedy_equals_one_by_one_greedy(
    family: str, croppers: dict[str, VLMCropper], queries: list[Query]
) -> None:
    """With left padding, batching must not change greedy outputs (right padding would
    append the answer after pad tokens and change it)."""
    cropper = _short(croppers[family])
    batched = cropper.generate_raw(queries)
    one_by_one = [cropper.generate_raw([q])[0] for q in queries]
    assert batched == one_by_one
    assert all(len(texts) == 1 and texts[0] for texts in batched)


def test_caller_processor_and_model_are_not_modified(
    tiny_qwen_dirs: dict[str, Path], queries: list[Query]
) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_qwen_dirs["qwen2_vl"]
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert processor.tokenizer.padding_side == "right"
    cropper = VLMCropper("unused-name", model_obj=model, processor=processor, config=SHORT)
    assert cropper.model is model and cropper.processor is processor
    decisions = cropper.decide_batch(queries)
    assert len(decisions) == 3
    assert processor.tokenizer.padding_side == "right"


def test_sampling_returns_num_return_sequences_completions(
    croppers: dict[str, VLMCropper], queries: list[Query]
) -> None:
    import torch

    cropper = _short(croppers["qwen2_5_vl"])
    torch.manual_seed(0)
    texts = cropper.generate_raw(queries, sample=True, num_return_sequences=3)
    assert [len(t) for t in texts] == [3, 3, 3]
    assert all(isinstance(s, str) and s for group in texts for s in group)
    # a random model sampled at temperature 1 does not repeat itself
    assert any(len(set(group)) > 1 for group in texts)
    groups = cropper.sample_decisions(queries[:2], num_return_sequences=2)
    assert [len(g) for g in groups] == [2, 2]
    for group, size in zip(groups, [(120, 80), (90, 160)]):
        for decision in group:
            _check_decision(decision, size)


def test_extreme_aspect_ratio_and_tiny_images_get_full_without_generation(
    croppers: dict[str, VLMCropper], queries: list[Query]
) -> None:
    cropper = _short(croppers["qwen2_5_vl"])
    thin = Query(Image.new("RGB", (3000, 10)), "what is this?", id="thin")
    tiny = Query(Image.new("RGB", (20, 20)), "what is this?", id="tiny")
    batch = [thin, queries[0], tiny]
    decisions = cropper.decide_batch(batch)
    assert [d.image_size for d in decisions] == [(3000, 10), (120, 80), (20, 20)]
    assert decisions[0].action is CropAction.FULL and decisions[0].raw_output is None
    assert decisions[0].reason and "aspect ratio" in decisions[0].reason
    assert decisions[2].action is CropAction.FULL and decisions[2].raw_output is None
    assert decisions[2].reason and "too small" in decisions[2].reason
    _check_decision(decisions[1], (120, 80))
    assert cropper.generate_raw(batch)[0] == []
    groups = cropper.sample_decisions([thin], num_return_sequences=3)
    assert len(groups[0]) == 3 and all(d.reason == decisions[0].reason for d in groups[0])


# --------------------------------------------------------------- coordinates
@pytest.mark.parametrize(
    "size", [(120, 80), (90, 160), (64, 64), (300, 200), (29, 500), (1000, 37)]
)
def test_qwen25_resized_size_agrees_with_the_processor_grid(
    size: tuple[int, int], croppers: dict[str, VLMCropper]
) -> None:
    cropper = croppers["qwen2_5_vl"]
    image = Image.new("RGB", size, (10, 20, 30))
    frame, resized = cropper.coordinate_frame_for(image)
    grid = cropper.processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"]
    _, grid_h, grid_w = (int(v) for v in grid[0])
    patch = cropper.processor.image_processor.patch_size
    assert frame is CoordFrame.QWEN25_RESIZED
    assert resized == (grid_w * patch, grid_h * patch)
    assert resized[0] % 28 == 0 and resized[1] % 28 == 0


def test_normalised_families_need_no_resized_size(croppers: dict[str, VLMCropper]) -> None:
    for family in ("qwen2_vl", "qwen3_vl"):
        assert croppers[family].coordinate_frame_for((300, 200)) == (CoordFrame.NORM_1000, None)


@pytest.mark.parametrize(
    ("family", "model_box"),
    [
        # 300x200 with the tiny budget (factor 28, max 12544 px): beta = sqrt(60000/12544),
        # height floor(200/beta/28)*28 = 84, width floor(300/beta/28)*28 = 112.
        ("qwen2_5_vl", [28, 21, 84, 63]),
        ("qwen2_vl", [250, 250, 750, 750]),
        ("qwen3_vl", [250, 250, 750, 750]),
    ],
)
def test_scripted_output_maps_to_the_original_pixel_box(
    family: str, model_box: list[int], croppers: dict[str, VLMCropper]
) -> None:
    cropper = croppers[family]
    image = Image.new("RGB", (300, 200))
    frame, resized = cropper.coordinate_frame_for(image)
    if family == "qwen2_5_vl":
        assert resized == (112, 84)
        grid = cropper.processor.image_processor(images=[image], return_tensors="pt")
        assert grid["image_grid_thw"][0].tolist() == [1, 6, 8]  # 84/14 rows, 112/14 columns
    text = (
        'Zooming on the subject.\n<tool_call>{"name": "image_zoom_in_tool", '
        f'"arguments": {{"bbox_2d": {model_box}}}}}</tool_call>'
    )
    decision = decision_from_output(text, image.size, frame, resized_size=resized)
    assert decision.action is CropAction.REGION
    assert decision.box is not None
    assert decision.box.as_tuple() == pytest.approx((75.0, 50.0, 225.0, 150.0))


def test_prompt_states_the_contract_and_the_frame(croppers: dict[str, VLMCropper]) -> None:
    qwen25 = croppers["qwen2_5_vl"].build_prompt("Who built it?", (300, 200))
    assert "Who built it?" in qwen25 and "NO_CROP_NEEDED" in qwen25
    assert '"name": "image_zoom_in_tool"' in qwen25 and "bbox_2d" in qwen25
    assert "112 pixels wide, 84 pixels high" in qwen25
    for family in ("qwen2_vl", "qwen3_vl"):
        assert "0 to 1000" in croppers[family].build_prompt("Who built it?", (300, 200))


def test_custom_template_and_pixel_budget(
    tiny_qwen_dirs: dict[str, Path], queries: list[Query], caplog: pytest.LogCaptureFixture
) -> None:
    config = VLMCropperConfig(
        max_new_tokens=4,
        max_pixels=28 * 28 * 6,
        prompt_template="Q: {question} ({width}x{height}) {frame_instructions}",
    )
    cropper = VLMCropper(str(tiny_qwen_dirs["qwen2_5_vl"]), config=config)
    _, resized = cropper.coordinate_frame_for((300, 200))
    assert resized is not None and resized[0] * resized[1] <= 28 * 28 * 6
    assert resized == tuple(reversed(qwen_smart_resize(200, 300, 28, 56 * 56, 28 * 28 * 6)))
    assert cropper.build_prompt("hi", (300, 200)).startswith(f"Q: hi ({resized[0]}x{resized[1]})")
    with caplog.at_level(logging.WARNING, logger="region_rerank"):
        decisions = cropper.decide_batch(queries)
    assert len(decisions) == 3
    # the processor was called with the same budget, so the grid matched the prediction
    assert not [r for r in caplog.records if "smart_resize predicted" in r.getMessage()]


def test_empty_batch_gives_no_decisions(croppers: dict[str, VLMCropper]) -> None:
    assert croppers["qwen2_vl"].decide_batch([]) == []
    assert croppers["qwen2_vl"].generate_raw([]) == []


# ------------------------------------------------------------------------- LoRA
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_lora_adapter_is_loaded_and_changes_the_outputs(
    tiny_qwen_dirs: dict[str, Path],
    croppers: dict[str, VLMCropper],
    queries: list[Query],
    tmp_path: Path,
) -> None:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForImageTextToText

    base_dir = tiny_qwen_dirs["qwen2_5_vl"]
    model = AutoModelForImageTextToText.from_pretrained(base_dir)
    lora = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1, target_modules="all-linear")
    peft_model = get_peft_model(model, lora)
    generator = torch.Generator().manual_seed(0)
    saved: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # zero at init: perturb so the adapter does something
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
                saved[name] = param.detach().clone()
    assert saved
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)

    tuned = VLMCropper(str(base_dir), adapter=str(adapter_dir), config=SHORT)
    assert isinstance(tuned.model, PeftModel)
    assert tuned.adapter == str(adapter_dir)
    assert not tuned.model.training
    loaded = dict(tuned.model.named_parameters())
    for name, value in list(saved.items())[:5]:
        assert torch.equal(loaded[name], value)

    base = _short(croppers["qwen2_5_vl"])
    inputs = _encode(base, queries[0])
    with torch.no_grad():
        base_logits = base.model(**inputs).logits
        tuned_logits = tuned.model(**inputs).logits
    assert base_logits.shape == tuned_logits.shape
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-3)
    assert tuned.generate_raw(queries) != base.generate_raw(queries)


def _encode(cropper: VLMCropper, query: Query) -> Any:
    from region_rerank.images import load_image

    image = load_image(query.image)
    text = cropper.processor.apply_chat_template(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image"},
                    {"type": "text", "text": cropper.build_prompt(query.question, image.size)},
                ],
            }
        ],
        add_generation_prompt=True,
        tokenize=False,
    )
    return cropper.processor(text=[text], images=[image], return_tensors="pt")


def test_adapter_with_an_injected_model_is_refused(tiny_qwen_dirs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="PeftModel"):
        VLMCropper(
            str(tiny_qwen_dirs["qwen2_vl"]),
            adapter="some/adapter",
            model_obj=SimpleNamespace(config=SimpleNamespace(model_type="qwen2_vl")),
        )


# ----------------------------------------------------------- families, config
def test_unknown_family_needs_an_explicit_frame(croppers: dict[str, VLMCropper]) -> None:
    processor = croppers["qwen2_vl"].processor
    other = SimpleNamespace(config=SimpleNamespace(model_type="llava"))
    with pytest.raises(ConfigError, match="coord_frame"):
        VLMCropper("x", model_obj=other, processor=processor)
    explicit = VLMCropper(
        "x",
        model_obj=other,
        processor=processor,
        config=VLMCropperConfig(coord_frame="norm_1000"),
    )
    assert explicit.frame is CoordFrame.NORM_1000
    forced = VLMCropper(
        "x",
        model_obj=other,
        processor=processor,
        config=VLMCropperConfig(coord_frame=CoordFrame.QWEN25_RESIZED),
    )
    assert forced.coordinate_frame_for((300, 200)) == (CoordFrame.QWEN25_RESIZED, (112, 84))


def test_trust_remote_code_logs_a_warning(
    tiny_qwen_dirs: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="region_rerank"):
        cropper = VLMCropper(
            str(tiny_qwen_dirs["qwen2_vl"]),
            model_options=ModelOptions(trust_remote_code=True),
        )
    assert cropper.model_type == "qwen2_vl"
    assert any("trust_remote_code" in r.getMessage() for r in caplog.records)


def test_config_defaults() -> None:
    cfg = VLMCropperConfig()
    assert (cfg.max_new_tokens, cfg.do_sample, cfg.coord_frame) == (256, False, "auto")
    assert "{question}" in DEFAULT_PROMPT
    assert VLMCropperConfig(coord_frame="qwen25_resized").coord_frame is CoordFrame.QWEN25_RESIZED


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 2.5}, "max_new_tokens"),
        ({"batch_size": -1}, "batch_size"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"do_sample": "yes"}, "do_sample"),
        ({"coord_frame": "degrees"}, "coord_frame"),
        ({"pad": -0.1}, "pad"),
        ({"min_pixels": 5000, "max_pixels": 4000}, "min_pixels"),
        ({"prompt_template": "no placeholder"}, "prompt_template"),
        ({"prompt_template": "{question} {unknown}"}, "prompt_template"),
        ({"max_aspect_ratio": 0.5}, "max_aspect_ratio"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        VLMCropperConfig(**kwargs)


def test_box_type_from_decision_is_a_box(croppers: dict[str, VLMCropper]) -> None:
    frame, resized = croppers["qwen2_5_vl"].coordinate_frame_for((120, 80))
    assert resized == (112, 84)  # round(120/28) = 4 columns, round(80/28) = 3 rows of 28
    text = '"bbox_2d": [0, 0, 56, 42]'
    decision = decision_from_output(text, (120, 80), frame, resized)
    assert isinstance(decision.box, Box)
    # x * 120/112, y * 80/84
    assert decision.box.as_tuple() == pytest.approx((0.0, 0.0, 60.0, 40.0))


def test_threads_share_one_cropper_with_sequential_results(
    croppers: dict[str, VLMCropper], queries: list[Query]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cropper = croppers["qwen2_5_vl"]
    expected = [d.raw_output for d in cropper.decide_batch(queries)]
    with ThreadPoolExecutor(8) as pool:
        runs = list(
            pool.map(lambda _: [d.raw_output for d in cropper.decide_batch(queries)], range(16))
        )
    assert all(run == expected for run in runs)
