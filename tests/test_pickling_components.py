"""Pickling and copying of every public component (issue 13's bad-input matrix): the
model-backed croppers and scorers and the cache pickle faithfully (their locks are
recreated), and the copy gives the same results as the original."""

from __future__ import annotations

import copy
import pickle
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from region_rerank import ClipScorer, CroppedReranker, EmbeddingCache
from region_rerank.croppers.grounding import GroundingCropper
from region_rerank.croppers.vlm import VLMCropper, VLMCropperConfig
from region_rerank.factory import build_cropper, build_scorer
from region_rerank.model_options import ModelOptions
from region_rerank.types import Candidate, Query
from tests.tiny.clip_models import build_tiny_clip, smooth_image
from tests.tiny.detectors import build_owlv2
from tests.tiny.qwen import build_tiny_qwen


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pickling")
    clip = ClipScorer(str(build_tiny_clip(root / "clip")), model_options=ModelOptions(device="cpu"))
    return {
        "clip": clip,
        "grounding": GroundingCropper(str(build_owlv2(root / "owlv2"))),
        "vlm": VLMCropper(
            str(build_tiny_qwen("qwen2_5_vl", root / "qwen")),
            config=VLMCropperConfig(max_new_tokens=8),
        ),
        "demo": build_scorer("demo"),
        "text_match": build_cropper("text_match", scorer=clip),
        "proposal": build_cropper("proposal", scorer=build_scorer("demo")),
    }


def _query() -> Query:
    return Query(smooth_image(96, 64, seed=3), "what is the red thing?", id="q")


def _clones(obj: Any) -> list[Any]:
    return [pickle.loads(pickle.dumps(obj)), copy.deepcopy(obj), copy.copy(obj)]


@pytest.mark.parametrize("name", ["clip", "demo"])
def test_scorers_pickle_and_embed_the_same(components: dict[str, Any], name: str) -> None:
    scorer = components[name]
    images, texts = [smooth_image(40, 40, seed=1)], ["a red bridge", "a blue lake"]
    expected = scorer.embed_images(images), scorer.embed_texts(texts)
    for clone in _clones(scorer):
        # Equal up to float32 kernel noise (the copied weights are bit-identical).
        assert torch.allclose(clone.embed_images(images), expected[0], atol=1e-6)
        assert torch.allclose(clone.embed_texts(texts), expected[1], atol=1e-6)


@pytest.mark.parametrize("name", ["grounding", "vlm", "text_match", "proposal"])
def test_croppers_pickle_and_decide_the_same(components: dict[str, Any], name: str) -> None:
    cropper = components[name]
    expected = cropper.decide(_query())
    for clone in _clones(cropper):
        got = clone.decide(_query())
        assert (got.action, got.box) == (expected.action, expected.box)


def test_locks_are_fresh_in_the_copy(components: dict[str, Any]) -> None:
    clip = components["clip"]
    clip.load()
    clone = pickle.loads(pickle.dumps(clip))
    lock_type = type(threading.RLock())
    assert isinstance(clone._lock, lock_type) and clone._lock is not clip._lock


def test_a_reranker_of_component_objects_pickles(components: dict[str, Any]) -> None:
    rr = CroppedReranker(components["grounding"], components["clip"])
    pool = [
        Candidate("a", "a red bridge", images=[smooth_image(32, 32, seed=5)]),
        Candidate("b", "x"),
    ]
    expected = rr.rerank(_query(), pool)
    got = pickle.loads(pickle.dumps(rr)).rerank(_query(), pool)
    assert got.ids == expected.ids
    assert [s.score for s in got.ranking] == pytest.approx(
        [s.score for s in expected.ranking], abs=1e-6
    )


def test_the_cache_pickles_with_its_entries(tmp_path: Path) -> None:
    cache = EmbeddingCache(1 << 20)
    cache.put("k", torch.ones(4))
    clone = pickle.loads(pickle.dumps(cache))
    hit = clone.get("k", 4)
    assert hit is not None and torch.equal(hit, torch.ones(4))
