"""Issue 13 item 9: the training path's coordinate frame.

* ``train vlm`` gives the processor the configured pixel budget, so the image size stated
  in the prompt, the reward's frame and what the model sees agree;
* a scripted valid REGION answer goes through the real training rows and the real TRL reward
  function, and its reward equals the reward of that box computed by hand (crop the box in
  original pixels, score it with the scorer, ``region_reward``).
"""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from region_rerank.demo.world import make_world
from region_rerank.factory import build_scorer
from region_rerank.images import load_image
from region_rerank.model_options import ModelOptions
from region_rerank.train.rewards import region_reward
from region_rerank.train.trl_reward import make_trl_reward
from region_rerank.train.vlm_config import DataSection, PromptSection, VLMTrainingConfig
from region_rerank.train.vlm_trainer import _training_rows, load_policy
from tests.tiny.qwen import build_tiny_qwen

pytestmark = pytest.mark.slow

#: A pixel budget far below the tiny processor's default, so the two resizes differ.
BUDGET = {"min_pixels": 28 * 28, "max_pixels": 28 * 28 * 6}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("frames")
    make_world(root / "world", seed=0, n_train=3, n_val=0, n_test=0, n_entities=12)
    model = build_tiny_qwen("qwen2_5_vl", root / "qwen")
    config = VLMTrainingConfig(
        model=str(model),
        output_dir=str(root / "out"),
        scorer="demo",
        device="cpu",
        data=DataSection(path=str(root / "world"), split="train", pool_k=6),
        prompt=PromptSection(template="Crop for: {question}", **BUDGET),
    )
    processor, _, prompter = load_policy(config)
    return {"config": config, "processor": processor, "prompter": prompter}


def test_the_processor_sees_the_configured_pixel_budget(setup: dict[str, Any]) -> None:
    processor, prompter = setup["processor"], setup["prompter"]
    image = Image.new("RGB", (300, 200), (10, 120, 40))
    _, resized = prompter.coordinate_frame_for(image)
    assert resized is not None and resized[0] * resized[1] <= BUDGET["max_pixels"]
    out = processor.image_processor(images=[image], return_tensors="pt")
    _, grid_h, grid_w = (int(v) for v in out["image_grid_thw"][0])
    patch = processor.image_processor.patch_size
    assert (grid_w * patch, grid_h * patch) == resized


def test_a_scripted_valid_box_gets_the_hand_computed_reward(setup: dict[str, Any]) -> None:
    config, prompter = setup["config"], setup["prompter"]
    scorer = build_scorer("demo", model_options=ModelOptions(device="cpu"))
    rows, index_embeddings = _training_rows(config, prompter, scorer, progress=False)
    assert index_embeddings is None  # the reward weighs re-ranking only
    row = rows[0]
    image = load_image(row["image"])
    rw, rh = row["resized_size"]
    # A box on the left half, written in the model-input (resized) pixel frame.
    x1, y1, x2, y2 = 0, 0, rw // 2, rh
    text = (
        '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": '
        f"[{x1}, {y1}, {x2}, {y2}]}}}}</tool_call>"
    )
    reward_fn = make_trl_reward(scorer, config.reward, frame=prompter.frame)
    columns = {k: [row[k]] for k in ("image", "candidate_embeddings", "is_positive", "full_scores")}
    got = reward_fn(
        prompts=["p"], completions=[text], resized_size=[row["resized_size"]], **columns
    )
    # By hand: the same box in original pixels, cropped, embedded and ranked.
    sx, sy = image.width / rw, image.height / rh
    box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
    crop = image.crop(tuple(round(v) for v in box))
    import torch

    cands = torch.as_tensor(row["candidate_embeddings"], dtype=torch.float32)
    crop_scores = scorer.score(scorer.embed_images([crop]), cands)[0].tolist()
    expected = region_reward(list(row["full_scores"]), crop_scores, list(row["is_positive"]))
    assert got[0] == pytest.approx(expected, abs=1e-4)
    # ... and it is not the malformed penalty nor the FULL reward.
    assert got[0] != config.reward.malformed_penalty


def test_retrieval_weight_gives_index_rows_and_keeps_uncovered_queries(
    setup: dict[str, Any],
) -> None:
    """``reward.retrieval_weight > 0`` in the VLM config: the rows carry the positives'
    index rows, queries whose pool misses the positive stay, and the TRL reward of a row
    is defined (the index reward alone when the pool misses every positive)."""
    from dataclasses import replace

    from region_rerank.train.rewards import RewardConfig

    base, prompter = setup["config"], setup["prompter"]
    config = replace(
        base,
        data=replace(base.data, pool_k=1),  # a one-entry pool misses most positives
        reward=RewardConfig(retrieval_weight=0.5),
    )
    scorer = build_scorer("demo", model_options=ModelOptions(device="cpu"))
    rows, index_embeddings = _training_rows(config, prompter, scorer, progress=False)
    assert index_embeddings is not None and index_embeddings.shape[0] == 12
    assert len(rows) == 3 and all(r["index_positive"] for r in rows)
    assert not all(any(r["is_positive"]) for r in rows)  # some pool misses its positive
    reward_fn = make_trl_reward(scorer, config.reward, index_embeddings=index_embeddings)
    columns = {
        k: list(rows[k])
        for k in ("image", "candidate_embeddings", "is_positive", "full_scores", "index_positive")
    }
    got = reward_fn(prompts=["p"] * 3, completions=["NO_CROP_NEEDED"] * 3, **columns)
    assert all(v is not None for v in got)
