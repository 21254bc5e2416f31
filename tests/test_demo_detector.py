"""The demo world's class-agnostic object detector and the light policy's detector boxes:
decoding, the shipped weights' recall on fresh scenes, checksums, image sizes, the policy's
detector flag, its card and pickling."""

from __future__ import annotations

import math
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from region_rerank import ConfigError, ProposalPolicyCropper, Query
from region_rerank.croppers.encoder_specs import build_proposal_detector
from region_rerank.croppers.proposal import PolicyArch, build_policy_net, save_proposal_policy
from region_rerank.croppers.proposal_net import (
    DETECTOR_GEOMETRY_DIM,
    GEOMETRY_DIM,
    box_geometry,
    detector_geometry,
    geometry_dim,
)
from region_rerank.demo.detector import (
    DETECTOR_INPUT,
    DETECTOR_WEIGHTS_PATH,
    STRIDE,
    DemoBoxDetector,
    decode_boxes,
    load_detector_net,
)
from region_rerank.demo.detector_training import detector_recall, scene_mix
from region_rerank.proposals import grid_proposals

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def detector() -> DemoBoxDetector:
    return DemoBoxDetector()


def test_decode_keeps_local_maxima_above_the_threshold_sized_by_the_heads() -> None:
    cells = DETECTOR_INPUT // STRIDE
    heat = torch.full((1, cells, cells), -10.0)
    heat[0, 5, 7] = 3.0  # a peak
    heat[0, 5, 8] = 2.0  # its weaker neighbour: suppressed
    heat[0, 20, 20] = -0.5  # sigmoid 0.38: below 0.5
    size = torch.zeros(1, 2, cells, cells)
    size[0, 0, 5, 7], size[0, 1, 5, 7] = math.log(0.25), math.log(0.5)
    offset = torch.full((1, 2, cells, cells), 0.5)
    (found,) = decode_boxes(heat, size, offset, max_boxes=8, min_score=0.5)
    assert len(found) == 1
    score, x1, y1, x2, y2 = found[0]
    assert score == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    cx, cy = 7.5 * STRIDE, 5.5 * STRIDE
    w, h = 0.25 * DETECTOR_INPUT, 0.5 * DETECTOR_INPUT
    assert (x1, y1, x2, y2) == pytest.approx((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    (two,) = decode_boxes(heat, size, offset, max_boxes=8, min_score=0.3)
    assert len(two) == 2 and two[0][0] > two[1][0]  # best first
    (one,) = decode_boxes(heat, size, offset, max_boxes=1, min_score=0.3)
    assert len(one) == 1


def test_the_shipped_detector_finds_the_objects_of_fresh_scenes(detector: DemoBoxDetector) -> None:
    scenes = scene_mix("detector-test", 40)  # a split never trained on
    found = detector_recall(detector.detect, scenes)
    assert found["object_recall@0.5"] >= 0.85, found
    assert found["target_recall@0.5"] >= 0.85, found
    assert 1.0 <= found["boxes_per_scene"] <= detector.max_boxes


def test_boxes_follow_the_image_size(detector: DemoBoxDetector) -> None:
    scene = scene_mix("detector-test", 1)[0]
    wide = scene.image.resize((448, 224))
    square, stretched = detector.detect([scene.image, wide])
    assert square and len(square) == len(stretched)
    for a, b in zip(square, stretched):
        assert (b.x1 / 2, b.y1, b.x2 / 2, b.y2) == pytest.approx(a.as_tuple(), abs=3.0)
        assert b.x1 >= 0 and b.y1 >= 0 and b.x2 <= 448 and b.y2 <= 224
    assert detector.detect([]) == []


def test_a_tampered_detector_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.safetensors"
    shutil.copy(DETECTOR_WEIGHTS_PATH, path)
    with pytest.raises(ConfigError, match="checksum file"):
        load_detector_net(path)
    shutil.copy(DETECTOR_WEIGHTS_PATH.with_suffix(".sha256"), path.with_suffix(".sha256"))
    assert load_detector_net(path) is not None
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="checksum mismatch"):
        load_detector_net(path)
    with pytest.raises(ConfigError, match="not found"):
        load_detector_net(tmp_path / "missing.safetensors")
    with pytest.raises(ConfigError, match="unknown proposal detector 'owl'"):
        build_proposal_detector("owl")
    assert build_proposal_detector("") is None


def test_detector_geometry_ranks_the_boxes_among_themselves() -> None:
    from region_rerank.types import Box

    boxes = [Box(0, 0, 10, 10), Box(50, 50, 90, 90), Box(80, 0, 100, 20)]
    rows = detector_geometry([box_geometry(b, (100, 100)) for b in boxes])
    assert all(len(r) == DETECTOR_GEOMETRY_DIM and r[0] == 1.0 for r in rows)
    assert [r[1] for r in rows] == [0.0, 0.5, 1.0]  # centre x: leftmost to rightmost
    assert [r[3] for r in rows] == [0.0, 1.0, 0.5]  # area: smallest to largest
    assert [r[4] for r in rows] == [0.0, 1.0, 0.5]  # distance to the top-left corner
    assert detector_geometry([box_geometry(boxes[0], (100, 100))]) == [[1.0] + [0.0] * 7]


def _policy(path: Path, detector: DemoBoxDetector) -> PolicyArch:
    arch = PolicyArch(detector="demo")
    net = build_policy_net(arch)
    torch.nn.init.normal_(net.out.weight)  # the decision depends on the inputs
    save_proposal_policy(net, arch, path, {"detector": detector.card()})
    return arch


def test_a_policy_with_a_detector_flags_its_boxes_and_checks_the_card(
    tmp_path: Path, detector: DemoBoxDetector
) -> None:
    path = tmp_path / "p.safetensors"
    arch = _policy(path, detector)
    assert geometry_dim(arch) == GEOMETRY_DIM + DETECTOR_GEOMETRY_DIM
    assert geometry_dim(PolicyArch()) == GEOMETRY_DIM
    cropper = ProposalPolicyCropper(weights=path)
    assert isinstance(cropper.detector, DemoBoxDetector)
    scene = scene_mix("detector-test", 1)[0]
    query = Query(scene.image, scene.question)
    inputs = cropper.policy_inputs([query])
    n_grid = len(grid_proposals(scene.image.size, arch.scales, arch.overlap))
    n_det = len(detector(scene.image))
    assert n_det >= 1 and int(inputs.mask[0].sum()) == 1 + n_grid + n_det
    flags = inputs.geometry[0, :, GEOMETRY_DIM]
    assert flags[: 1 + n_grid].sum() == 0 and flags[1 + n_grid :].sum() == n_det
    assert inputs.geometry[0, : 1 + n_grid, GEOMETRY_DIM:].abs().sum() == 0
    det_rows = inputs.geometry[0, 1 + n_grid : 1 + n_grid + n_det]
    rightmost = int(det_rows[:, 4].argmax())  # centre x
    assert det_rows[rightmost, GEOMETRY_DIM + 1] == 1.0  # ranked highest by centre x
    decision = pickle.loads(pickle.dumps(cropper)).decide(query)
    assert decision == cropper.decide(query)
    other = DemoBoxDetector(max_boxes=3)
    save_proposal_policy(build_policy_net(arch), arch, path, {"detector": other.card()})
    with pytest.raises(ConfigError, match=r"proposal detector \(max_boxes: trained with 3, got 8"):
        ProposalPolicyCropper(weights=path)
    mine = ProposalPolicyCropper(weights=path, detector=lambda image, q: [(0, 0, 10, 10)])
    assert int(mine.policy_inputs([query]).mask[0].sum()) == 1 + n_grid + 1


def test_train_proposal_with_the_demo_detector_records_and_rebuilds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from region_rerank.cli import main
    from region_rerank.demo.world import make_world
    from region_rerank.train.policy_set import cached_training_set

    data = tmp_path / "data"
    make_world(data, seed=5, n_train=24, n_val=0, n_test=0, n_entities=40, kb_images=1)
    out = tmp_path / "policy"
    args = ["train", "proposal", "--data", str(data), "--out", str(out), "--scorer", "fake"]
    assert main([*args, "--detector", "demo", "--epochs", "1", "--val-fraction", "0.25"]) == 0
    cropper = ProposalPolicyCropper.from_pretrained(out)
    assert cropper.arch.detector == "demo" and isinstance(cropper.detector, DemoBoxDetector)
    assert cropper.card["detector"] == DemoBoxDetector().card()
    assert (
        cropper.net.geo[0].in_features == GEOMETRY_DIM + DETECTOR_GEOMETRY_DIM + 6
    )  # + the context features
    # the feature cache names the detector's card: other detector weights rebuild it
    cache = out / "train_set.pt"
    source = torch.load(cache, weights_only=True)["source"]
    assert source["detector"] == DemoBoxDetector().card()
    mine = {k: v for k, v in source.items() if k != "features"}
    assert cached_training_set(cache, cropper.arch, mine) is not None
    retrained = {**mine, "detector": {**mine["detector"], "sha256": "0" * 64}}
    assert cached_training_set(cache, cropper.arch, retrained) is None
    capsys.readouterr()
    assert main([*args, "--detector", "owl", "--epochs", "1"]) != 0
    assert "unknown proposal detector 'owl'" in capsys.readouterr().err


def test_the_shipped_objects_policy_builds_from_specs() -> None:
    from region_rerank import build_cropper
    from region_rerank.demo.scorer import DemoScorer

    cropper = build_cropper("proposal:objects", scorer="demo")  # a scorer spec is built
    assert isinstance(cropper.scorer, DemoScorer) and isinstance(cropper.detector, DemoBoxDetector)
    assert cropper.card["detector"] == DemoBoxDetector().card()
    assert cropper.card["training"]["train_queries"] > 0
    scene = scene_mix("detector-test", 1)[0]
    assert cropper.decide(Query(scene.image, scene.question)).image_size == scene.image.size
    both = build_cropper("proposal:dense-objects", scorer="demo")  # fixed encoder + boxes
    assert both.arch.encoder == "dense:demo" and isinstance(both.detector, DemoBoxDetector)
    assert both.card["detector"] == DemoBoxDetector().card()
    assert both.decide(Query(scene.image, scene.question)).image_size == scene.image.size
    searcher = build_cropper("proposal:objects-retrieval", scorer="demo")  # trained for search
    assert searcher.card["training"]["config"]["reward"]["retrieval_weight"] == 0.5
    assert isinstance(searcher.detector, DemoBoxDetector)
    assert searcher.decide(Query(scene.image, scene.question)).image_size == scene.image.size
    with pytest.raises(ConfigError, match="unknown scorer 'nope'"):
        build_cropper("text_match", scorer="nope")
