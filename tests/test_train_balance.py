"""Decision-balanced groups for generative policies: the plan, answer kinds, and splitting
a real Qwen-VL processor batch per prompt (what the forced REGION re-sampling feeds to
``generate``)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from region_rerank.errors import ConfigError
from region_rerank.train.balance import answer_kind, plan_balance
from tests.tiny.qwen import build_tiny_qwen

REGION = '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [1, 2, 30, 40]}}'


def test_answer_kinds_follow_the_cropper_parser() -> None:
    assert answer_kind("NO_CROP_NEEDED") is False
    assert answer_kind("some prose without any call") is False
    assert answer_kind(REGION + "</tool_call>") is True
    assert answer_kind("<tool_call>garbage") is True  # intends to crop, malformed box


def test_plan_fixes_exactly_the_one_sided_groups() -> None:
    kinds = [True] * 4 + [False] * 4 + [True, False, False, True]
    plan = plan_balance(kinds, 4, random.Random(0))
    assert len(plan.to_full) == 1 and 0 <= plan.to_full[0] < 4
    assert len(plan.to_region) == 1 and 4 <= plan.to_region[0] < 8
    fixed = list(kinds)
    for row in plan.to_full:
        fixed[row] = False
    for row in plan.to_region:
        fixed[row] = True
    for g in range(0, len(fixed), 4):
        assert set(fixed[g : g + 4]) == {True, False}


def test_plan_leaves_mixed_groups_alone_and_is_seeded() -> None:
    mixed = [True, False] * 8
    assert plan_balance(mixed, 4, random.Random(1)).to_full == ()
    a = plan_balance([True] * 40, 4, random.Random(7))
    b = plan_balance([True] * 40, 4, random.Random(7))
    assert a == b and len(set(r % 4 for r in a.to_full)) > 1  # random slot, reproducible


@pytest.mark.parametrize(("kinds", "n"), [([True, False], 1), ([True, False, True], 2)])
def test_plan_rejects_bad_group_layouts(kinds: list[bool], n: int) -> None:
    with pytest.raises(ConfigError):
        plan_balance(kinds, n, random.Random(0))


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_slicing_matches_processing_the_rows_alone(family: str, tmp_path: Path) -> None:
    from transformers import AutoProcessor
    from trl.data_utils import prepare_multimodal_messages

    from region_rerank.train.vlm_grpo import slice_multimodal_rows

    processor = AutoProcessor.from_pretrained(build_tiny_qwen(family, tmp_path / family))
    images = [
        Image.new("RGB", size, c)
        for size, c in [((64, 48), "red"), ((100, 40), "blue"), ((48, 96), "green")]
    ]
    convs = [prepare_multimodal_messages([{"role": "user", "content": "q"}], [im]) for im in images]
    kw = {"add_generation_prompt": True, "tokenize": True, "return_dict": True}
    batch = processor.apply_chat_template(conversation=convs, **kw)
    fields = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
    got = slice_multimodal_rows(fields, [2, 0], 3, extra_tokens=3)
    alone = processor.apply_chat_template(conversation=[convs[2], convs[0]], **kw)
    assert torch.equal(got["pixel_values"], torch.as_tensor(alone["pixel_values"]))
    assert torch.equal(got["image_grid_thw"], torch.as_tensor(alone["image_grid_thw"]))
    assert got["mm_token_type_ids"] == [[*row, 0, 0, 0] for row in alone["mm_token_type_ids"]]
    with pytest.raises(ConfigError, match="one image per prompt"):
        slice_multimodal_rows(fields, [0], 4, extra_tokens=0)
