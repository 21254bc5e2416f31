"""The embedded demo scorer: shipped, checksum-verified image tower + real MiniLM."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from region_rerank.demo.entities import build_kb, render_entity
from region_rerank.demo.scorer import DemoScorer
from region_rerank.demo.tower import WEIGHTS_PATH, load_image_tower, sha256_of
from region_rerank.demo.tower_training import entity_phrase
from region_rerank.errors import ConfigError
from region_rerank.model_options import ModelOptions
from region_rerank.scorers.base import TensorImageScorer
from region_rerank.types import Box
from region_rerank.views import embed_views


@pytest.fixture(scope="module")
def scorer() -> DemoScorer:
    return DemoScorer(model_options=ModelOptions(device="cpu"))


def test_shipped_weights_are_small_and_verified() -> None:
    assert WEIGHTS_PATH.stat().st_size <= 10 * 1024 * 1024
    assert sha256_of(WEIGHTS_PATH) == WEIGHTS_PATH.with_suffix(".sha256").read_text().strip()
    model = load_image_tower()
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_tampered_or_missing_weights_are_refused(tmp_path: Path) -> None:
    copy = tmp_path / "tower.safetensors"
    shutil.copy(WEIGHTS_PATH, copy)
    shutil.copy(WEIGHTS_PATH.with_suffix(".sha256"), copy.with_suffix(".sha256"))
    load_image_tower(copy)  # an intact copy loads
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="checksum mismatch"):
        load_image_tower(copy)
    with pytest.raises(ConfigError, match="not found"):
        load_image_tower(tmp_path / "missing.safetensors")


def test_embeddings_are_normalised_minilm_space(scorer: DemoScorer) -> None:
    assert isinstance(scorer, TensorImageScorer)
    texts = scorer.embed_texts(["a red striped star", "a blue dotted ring"])
    assert texts.shape == (2, 384)
    assert torch.allclose(texts.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert float(texts[0] @ texts[1]) < 0.99
    images = scorer.embed_images([Image.new("RGB", (50, 70), "white")])
    assert images.shape == (1, 384) and abs(float(images.norm()) - 1) < 1e-5
    assert scorer.embed_texts([]).shape == (0, 384)


def test_image_tower_recognises_rendered_entities(scorer: DemoScorer) -> None:
    """The trained tower maps an entity drawing next to its attribute phrase: top-1 over
    all 320 phrases on fresh renders (seed unseen in training)."""
    kb = build_kb()
    phrases = scorer.embed_texts([entity_phrase(e) for e in kb])
    rng = np.random.default_rng(12345)
    picks = kb[::8]
    images = []
    for entity in picks:
        canvas = Image.new("RGBA", (80, 80), (215, 215, 210, 255))
        canvas.alpha_composite(render_entity(entity, 64, rng), (8, 8))
        images.append(canvas.convert("RGB"))
    pred = (scorer.embed_images(images) @ phrases.T).argmax(-1)
    accuracy = float((pred == torch.tensor([e.index for e in picks])).float().mean())
    assert accuracy >= 0.9, accuracy


def test_tensor_path_equals_pil_path(scorer: DemoScorer) -> None:
    rng = np.random.default_rng(0)
    img = Image.new("RGB", (200, 150), (230, 230, 230))
    tile = render_entity(build_kb()[3], 60, rng)
    img.paste(tile, (100, 50), tile)
    box = Box(90, 40, 170, 120)
    fast = embed_views(scorer, [img], [[None, box]], tensor_crop=True)[0]
    slow = embed_views(scorer, [img], [[None, box]], tensor_crop=False)[0]
    assert torch.allclose(fast, slow, atol=1e-5)


def test_a_tower_of_another_width_trains_saves_and_loads_as_a_scorer(tmp_path: Path) -> None:
    from region_rerank.demo.tower_training import TowerTrainingConfig, train_image_tower

    cfg = TowerTrainingConfig(
        seed=3, steps=2, batch_size=8, tiles_per_entity=1, eval_samples=8, width=(8, 12, 16, 16, 24)
    )
    path = tmp_path / "tower.safetensors"
    summary = train_image_tower(cfg, path)
    assert list(summary["config"]["width"]) == [8, 12, 16, 16, 24]
    tower = load_image_tower(path)
    convs = [m for m in tower.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 12, 16, 16, 24, 24]  # deeper, narrower
    other = DemoScorer(path)
    assert other.name == f"demo:{path}" and DemoScorer().name == "demo"  # another scorer
    emb = other.embed_images([Image.new("RGB", (50, 30), (200, 30, 30))])
    assert emb.shape == (1, 384) and torch.isfinite(emb).all()
