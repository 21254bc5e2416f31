"""A dtype pass as a proxy for GPUs (issue 13): the pipeline runs with bfloat16 weights on
the CPU, and its results stay within a stated tolerance of float32.

Tolerance: bfloat16 keeps 8 bits of mantissa (~0.4% relative), so cosine scores of
normalised embeddings agree within :data:`SCORE_TOLERANCE` and decisions are valid boxes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from region_rerank import ClipScorer, CroppedReranker, RerankerConfig
from region_rerank.croppers.grounding import GroundingCropper
from region_rerank.croppers.vlm import VLMCropper, VLMCropperConfig
from region_rerank.model_options import ModelOptions
from region_rerank.testing import FakeCropper
from region_rerank.types import Candidate, Query
from tests.tiny.clip_models import build_tiny_clip, smooth_image
from tests.tiny.detectors import build_owlv2
from tests.tiny.qwen import build_tiny_qwen

#: Largest |score(bf16) - score(fp32)| accepted for a cosine score in [-1, 1].
SCORE_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bf16")
    return {
        "clip": build_tiny_clip(root / "clip"),
        "owlv2": build_owlv2(root / "owlv2"),
        "qwen": build_tiny_qwen("qwen2_5_vl", root / "qwen"),
    }


def _queries() -> list[Query]:
    return [
        Query(smooth_image(96, 64, seed=s), f"what is object {s}?", id=str(s)) for s in range(3)
    ]


def _pool() -> list[Candidate]:
    return [
        Candidate(f"c{i}", f"entry {i}", images=[smooth_image(40, 40, seed=50 + i)])
        for i in range(5)
    ]


def _scores(rr: CroppedReranker) -> list[dict[str, float]]:
    results = rr.rerank_batch(_queries(), [_pool() for _ in range(3)])
    assert not any(r.fallback for r in results)
    return [{s.candidate.id: s.score for s in r.ranking} for r in results]


def test_clip_scorer_in_bfloat16_matches_float32(models: dict[str, Path]) -> None:
    crop = FakeCropper((0.1, 0.2, 0.7, 0.9))
    fp32 = ClipScorer(
        str(models["clip"]), model_options=ModelOptions(device="cpu", dtype="float32")
    )
    bf16 = ClipScorer(
        str(models["clip"]), model_options=ModelOptions(device="cpu", dtype="bfloat16")
    )
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    for a, b in zip(_scores(CroppedReranker(crop, fp32)), _scores(CroppedReranker(crop, bf16))):
        assert a.keys() == b.keys()
        assert max(abs(a[k] - b[k]) for k in a) <= SCORE_TOLERANCE


def _valid(decision: Any, size: tuple[int, int]) -> bool:
    b = decision.box
    return b is None or (0 <= b.x1 < b.x2 <= size[0] and 0 <= b.y1 < b.y2 <= size[1])


def test_croppers_decide_in_bfloat16(models: dict[str, Path]) -> None:
    scorer = ClipScorer(
        str(models["clip"]), model_options=ModelOptions(device="cpu", dtype="bfloat16")
    )
    bf16 = ModelOptions(device="cpu", dtype="bfloat16")
    croppers = {
        "owlv2": GroundingCropper(str(models["owlv2"]), model_options=bf16),
        "vlm": VLMCropper(
            str(models["qwen"]), model_options=bf16, config=VLMCropperConfig(max_new_tokens=8)
        ),
    }
    for name, cropper in croppers.items():
        decisions = cropper.decide_batch(_queries())
        assert len(decisions) == 3, name
        assert all(_valid(d, (96, 64)) for d in decisions), name
        rr = CroppedReranker(cropper, scorer, config=RerankerConfig(on_error="raise"))
        results = rr.rerank_batch(_queries(), [_pool() for _ in range(3)])
        assert [sorted(r.ids) for r in results] == [sorted(c.id for c in _pool())] * 3


def test_detector_decisions_in_bfloat16_match_float32(models: dict[str, Path]) -> None:
    """Same actions as float32; boxes within a few pixels when both crop."""

    def cropper(dtype: str) -> GroundingCropper:
        options = ModelOptions(device="cpu", dtype=dtype)
        return GroundingCropper(str(models["owlv2"]), model_options=options)

    images = [Image.new("RGB", (96, 64), (200, 30, 30)), smooth_image(96, 64, seed=7)]
    queries = [Query(img, "the red thing?") for img in images]
    for a, b in zip(
        cropper("float32").decide_batch(queries), cropper("bfloat16").decide_batch(queries)
    ):
        assert a.action == b.action
        if a.box is not None and b.box is not None:
            assert max(abs(x - y) for x, y in zip(a.box.as_tuple(), b.box.as_tuple())) <= 6.0


def test_a_vlm_training_step_in_bfloat16(models: dict[str, Path], tmp_path: Path) -> None:
    """Two r-GRPO steps of ``train vlm`` with ``precision: bf16`` on the CPU: the weights
    load in bfloat16, TRL trains in bfloat16, rewards are finite and the LoRA moves."""
    import json
    import math

    from region_rerank.cli import main
    from region_rerank.demo.world import make_world

    make_world(tmp_path / "world", seed=0, n_train=4, n_val=0, n_test=0, n_entities=16)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"model: {models['qwen']}\noutput_dir: {tmp_path / 'out'}\nscorer: demo\ndevice: cpu\n"
        f"data: {{path: {tmp_path / 'world'}, split: train, pool_k: 6, max_queries: 2}}\n"
        "lora: {r: 4, alpha: 16, dropout: 0.0}\n"
        "grpo: {num_generations: 4, per_device_train_batch_size: 4, max_steps: 2, "
        "max_completion_length: 12, learning_rate: 1.0e-3, warmup_steps: 0, "
        "save_steps: 1000, precision: bf16}\n"
        'prompt: {template: "Crop for: {question}"}\n'
    )
    assert main(["train", "vlm", "--config", str(cfg), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["dtype"] == "bfloat16"
    assert summary["steps"] == 2 and summary["trainable_l2_change"] > 0
    assert all(math.isfinite(h["reward"]) for h in summary["history"])
    records = (tmp_path / "out" / "completions.jsonl").read_text().splitlines()
    assert records and all(math.isfinite(json.loads(r)["reward"]) for r in records)
