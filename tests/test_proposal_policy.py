"""The light learned cropper: weights I/O, decisions, batching, and a tiny r-GRPO run."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from region_rerank.croppers.proposal import (
    WEIGHTS_PATH,
    PolicyArch,
    ProposalPolicyCropper,
    build_policy_net,
    load_proposal_policy,
    save_proposal_policy,
)
from region_rerank.errors import ConfigError
from region_rerank.eval.datasets import EvalDataset, EvalQuery, KBEntry
from region_rerank.images import crop_pil
from region_rerank.testing import FakeScorer
from region_rerank.train.data import build_reward_examples
from region_rerank.train.policy_set import build_policy_training_set
from region_rerank.train.proposal_trainer import ProposalTrainingConfig, train_policy
from region_rerank.train.rewards import full_reward, region_reward
from region_rerank.train.sampling import GroupSamplingConfig
from region_rerank.types import Query

ARCH = PolicyArch(dim=27, hidden=16, heads=2, scales=(0.4, 0.6), overlap=0.5, scorer="fake")
COLOURS = ("red", "green", "yellow", "magenta", "cyan", "white")
RGB = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
    "white": (255, 255, 255),
}


def _random_net(arch: PolicyArch, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_policy_net(arch)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # leave the uniform initial policy
    return net.eval()


def _scene(rng: random.Random, size: tuple[int, int] = (64, 64)) -> tuple[Image.Image, str, str]:
    target, other = rng.sample(COLOURS, 2)
    img = Image.new("RGB", size, (0, 0, 255))
    w, h = size
    for colour in (target, other):
        x, y = rng.randrange(0, w - 20), rng.randrange(0, h - 20)
        img.paste(RGB[colour], (x, y, x + 18, y + 18))
    return img, target, f"What is the {target} object?"


def _dataset(n: int, seed: int) -> EvalDataset:
    rng = random.Random(seed)
    kb = {c: KBEntry(c, text=f"{c} thing") for c in COLOURS}
    queries = []
    for i in range(n):
        img, target, question = _scene(rng)
        queries.append(EvalQuery(f"q{seed}-{i}", img, question, frozenset({target})))
    pools = {q.id: tuple((c, 0.0) for c in COLOURS) for q in queries}
    return EvalDataset(f"tiny{seed}", tuple(queries), kb, pools)


def test_save_load_verifies_checksum(tmp_path: Path) -> None:
    net = _random_net(ARCH)
    path = tmp_path / "policy.safetensors"
    digest = save_proposal_policy(net, ARCH, path, {"note": "test"})
    assert path.with_suffix(".sha256").read_text().strip() == digest
    loaded, arch, meta = load_proposal_policy(path)
    assert arch == ARCH and meta == {"note": "test"}
    for (k, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    n_params = sum(p.numel() for p in build_policy_net().parameters())
    assert n_params * 4 < 1_000_000  # the default policy stays under ~1 MB
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ConfigError, match="checksum mismatch"):
        load_proposal_policy(path)
    path.with_suffix(".sha256").unlink()
    with pytest.raises(ConfigError, match="missing"):
        load_proposal_policy(path)
    with pytest.raises(ConfigError, match="not found"):
        load_proposal_policy(tmp_path / "absent.safetensors")


def test_decides_inside_the_image_and_batch_equals_single(tmp_path: Path) -> None:
    path = tmp_path / "policy.safetensors"
    save_proposal_policy(_random_net(ARCH, seed=3), ARCH, path)
    cropper = ProposalPolicyCropper(FakeScorer(), path)
    rng = random.Random(0)
    sizes = [(64, 64), (90, 50), (40, 120), (64, 64), (33, 33)]
    queries = [Query(_scene(rng, s)[0], f"the {c} one") for s, c in zip(sizes, COLOURS)]
    batch = cropper.decide_batch(queries)
    single = [cropper.decide(q) for q in queries]
    for b, s in zip(batch, single):
        assert (b.action, b.box, b.image_size) == (s.action, s.box, s.image_size)
        assert b.confidence == pytest.approx(s.confidence, abs=1e-5)
    assert any(d.is_crop for d in batch)
    for d, size in zip(batch, sizes):
        assert d.image_size == size and d.source == "proposal"
        if d.box is not None:
            assert 0 <= d.box.x1 < d.box.x2 <= size[0] and 0 <= d.box.y1 < d.box.y2 <= size[1]
    assert cropper.decide_batch([]) == []


def test_crop_gate_keeps_the_full_image_when_the_policy_is_unsure(tmp_path: Path) -> None:
    from region_rerank.croppers.proposal import ProposalPolicyConfig
    from region_rerank.factory import build_cropper

    path = tmp_path / "policy.safetensors"
    save_proposal_policy(_random_net(ARCH, seed=3), ARCH, path)
    rng = random.Random(0)
    queries = [Query(_scene(rng)[0], f"the {c} one") for c in COLOURS]
    free = ProposalPolicyCropper(FakeScorer(), path).decide_batch(queries)
    crops = [d.confidence for d in free if d.is_crop]
    assert crops and all(c is not None for c in crops)
    gate = sorted(crops)[len(crops) // 2]  # a gate between the policy's own confidences
    gated = ProposalPolicyCropper(
        FakeScorer(), path, config=ProposalPolicyConfig(min_crop_confidence=gate)
    ).decide_batch(queries)
    for f, g in zip(free, gated):
        if f.is_crop and f.confidence >= gate:
            assert g.is_crop and g.box == f.box  # confident crops are untouched
        elif f.is_crop:
            assert not g.is_crop and "crop gate" in (g.reason or "")
        else:
            assert not g.is_crop and g.reason == f.reason
    assert sum(g.is_crop for g in gated) < sum(f.is_crop for f in free)
    # the gate recorded in the card applies by default; the config and the spec override it
    carded = tmp_path / "carded.safetensors"
    save_proposal_policy(_random_net(ARCH, seed=3), ARCH, carded, {"min_crop_confidence": 1.0})
    assert not any(
        d.is_crop for d in ProposalPolicyCropper(FakeScorer(), carded).decide_batch(queries)
    )
    cfg = ProposalPolicyConfig(min_crop_confidence=0.0)
    assert ProposalPolicyCropper(FakeScorer(), carded, config=cfg).min_crop_confidence == 0.0
    spec = build_cropper(f"proposal:{carded}", scorer=FakeScorer(), threshold=gate)
    assert spec.min_crop_confidence == gate
    with pytest.raises(ConfigError, match="min_crop_confidence"):
        ProposalPolicyConfig(min_crop_confidence=1.5)
    bad = tmp_path / "bad.safetensors"
    save_proposal_policy(_random_net(ARCH), ARCH, bad, {"min_crop_confidence": "high"})
    with pytest.raises(ConfigError, match="not in \\[0, 1\\]"):
        ProposalPolicyCropper(FakeScorer(), bad)


def test_detector_boxes_become_actions() -> None:
    arch = PolicyArch(dim=27, hidden=16, heads=2, scales=(0.9,), scorer="fake")
    cropper = ProposalPolicyCropper(
        FakeScorer(),
        (_random_net(arch), arch),
        detector=lambda image, question: [(-5, -5, 20, 20), (30, 30, 30, 40)],  # 1 valid
    )
    img = Image.new("RGB", (64, 64), "blue")
    inputs = cropper.policy_inputs([Query(img, "red")])
    # FULL + 4 grid boxes (side 57.6, 2 x 2) + the clamped detector box; the empty one dropped
    assert inputs.mask.sum() == 6
    assert inputs.boxes[0][-1].as_tuple() == (0, 0, 20, 20)


def test_tiny_training_run_uses_real_rankings() -> None:
    scorer = FakeScorer()
    train = build_policy_training_set(_dataset(40, 0), scorer, ARCH, progress=False)
    val = build_policy_training_set(_dataset(16, 1), scorer, ARCH, progress=False)
    assert len(train) == 40 and train.num_dropped == 0
    rewards, first = train.reward_table()
    # one entry recomputed from scratch: crop the proposal, embed, rank the real pool
    ds = _dataset(40, 0)
    q = ds.queries[5]
    cropper = ProposalPolicyCropper(scorer, (build_policy_net(ARCH), ARCH))
    boxes = cropper.policy_inputs([q.to_query()]).boxes[0]
    cands = scorer.embed_candidates(ds.candidates(q.id))
    full = scorer.score(scorer.embed_images([q.image]), cands)[0].tolist()
    pos = [c.id in q.positives for c in ds.candidates(q.id)]
    crop = scorer.score(scorer.embed_images([crop_pil(q.image, boxes[2])]), cands)[0].tolist()
    assert float(rewards[5, 0]) == full_reward(full, pos)
    assert float(rewards[5, 3]) == pytest.approx(region_reward(full, crop, pos), abs=1e-5)
    assert bool(first[:, 1:].any(1).float().mean() > first[:, 0].float().mean())

    initial = {k: v.clone() for k, v in build_policy_net(ARCH).state_dict().items()}
    cfg = ProposalTrainingConfig(
        epochs=4, batch_queries=8, warmup_steps=2, lr=5e-3, sampling=GroupSamplingConfig(4)
    )
    result = train_policy(train, val, cfg)
    assert len(result.history) == 4 * 5 and len(result.val_history) == 4
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    trained = result.net.state_dict()
    changed = [k for k in initial if not torch.equal(initial[k], trained[k])]
    assert "out.weight" in changed and len(changed) > len(initial) // 2
    # every sampled group reward is a value of the real reward table
    assert all(-0.26 <= h["reward"] <= float(rewards.max()) for h in result.history)
    assert 0.0 <= result.val_history[-1]["cond_r1"] <= 1.0
    # the kept epoch is the one with the best validation reward (the default select_by)
    best = max(v["reward"] for v in result.val_history)
    assert result.val_history[result.best_epoch - 1]["reward"] == best
    with pytest.raises(ConfigError, match="select_by"):
        ProposalTrainingConfig(select_by="loss")


def test_reward_examples_keep_only_covered_queries() -> None:
    ds = _dataset(6, 2)
    pools = dict(ds.pools)
    pools[ds.queries[0].id] = (("cyan", 0.0),) if "cyan" not in ds.queries[0].positives else ()
    ds = EvalDataset(ds.name, ds.queries, ds.kb, pools)
    examples = build_reward_examples(ds, FakeScorer(), progress=False)
    assert [e.query_id for e in examples] == [q.id for q in ds.queries[1:]]
    e = examples[0]
    assert e.candidate_embeddings.shape == (6, 27) and any(e.is_positive)
    assert len(e.full_scores) == 6


@pytest.mark.skipif(not WEIGHTS_PATH.is_file(), reason="shipped weights not trained yet")
def test_shipped_weights_load() -> None:
    net, arch, meta = load_proposal_policy()
    assert arch.scorer == "demo" and "training" in meta
    assert sum(p.numel() for p in net.parameters()) * 4 < 1_000_000


def test_the_paraphrased_policy_ships_verified_with_its_training_record() -> None:
    from region_rerank.checksums import sha256_of
    from region_rerank.croppers.proposal import PARAPHRASED_WEIGHTS_PATH, SHIPPED_WEIGHTS

    assert SHIPPED_WEIGHTS["paraphrased"] == PARAPHRASED_WEIGHTS_PATH
    expected = PARAPHRASED_WEIGHTS_PATH.with_suffix(".sha256").read_text().strip()
    assert sha256_of(PARAPHRASED_WEIGHTS_PATH) == expected
    _, arch, meta = load_proposal_policy(PARAPHRASED_WEIGHTS_PATH)
    assert arch == load_proposal_policy()[1]  # the default policy's architecture
    training = meta["training"]
    assert training["config"]["resample_wording"] is True
    assert training["wordings_per_question"] > 1
    assert training["world"]["scene"]["paraphrases"] == 6


def test_factory_builds_the_policy(tmp_path: Path) -> None:
    from region_rerank.factory import build_cropper

    path = tmp_path / "policy.safetensors"
    save_proposal_policy(_random_net(ARCH), ARCH, path)
    scorer = FakeScorer()
    cropper = build_cropper(f"proposal:{path}", scorer=scorer)
    assert isinstance(cropper, ProposalPolicyCropper) and cropper.scorer is scorer
    assert cropper.arch == ARCH
