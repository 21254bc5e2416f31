"""The retrieval-aware r-GRPO objective: whole-index statistics equal the plain ranking
statistics, the mix, and training sets that keep the queries the full-image pool misses."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from region_rerank.errors import ConfigError
from region_rerank.eval.datasets import EvalDataset
from region_rerank.index import CandidateIndex
from region_rerank.testing import FakeScorer
from region_rerank.train.index_reward import index_rewards, index_stats, stats_rows
from region_rerank.train.policy_set import build_policy_training_set
from region_rerank.train.proposal_trainer import ProposalTrainingConfig, train_policy
from region_rerank.train.rewards import (
    RewardConfig,
    combine_rewards,
    full_reward,
    ranking_stats,
    region_reward,
)
from region_rerank.train.sampling import GroupSamplingConfig
from tests.test_proposal_policy import ARCH, _dataset


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=2, max_size=12),  # few values: many ties
    st.data(),
)
def test_index_stats_equal_ranking_stats_with_ties(values: list[int], data: st.DataObject) -> None:
    n = len(values)
    positives = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n)))
    scores = torch.tensor([values, values[::-1]], dtype=torch.float32) / 4
    table = index_stats(scores, positives)
    for row, got in zip(scores.tolist(), stats_rows(table)):
        want = ranking_stats(row, [i in positives for i in range(n)])
        assert got.rank_first_positive == want.rank_first_positive
        assert got.mrr == pytest.approx(want.mrr)
        assert got.ndcg == pytest.approx(want.ndcg)
        assert got.margin == pytest.approx(want.margin)


def test_index_rewards_are_the_plain_rewards_over_the_whole_ranking() -> None:
    full = [0.9, 0.5, 0.7, 0.1]
    crop = [0.2, 0.8, 0.6, 0.3]
    pos = [False, True, False, False]
    got = index_rewards(index_stats(torch.tensor([full, crop]), [1]))
    assert got[0] == full_reward(full, pos)
    assert got[1] == pytest.approx(region_reward(full, crop, pos))


@pytest.mark.parametrize(
    ("scores", "positives", "match"),
    [
        (torch.zeros(3), [0], "A x N"),
        (torch.zeros(1, 3), [], "no positive"),
        (torch.zeros(1, 3), [3], "column indices"),
        (torch.zeros(1, 3), [1, 1], "distinct"),
        (torch.tensor([[0.0, float("nan"), 1.0]]), [0], "finite"),
    ],
)
def test_bad_index_stats_inputs_are_config_errors(
    scores: torch.Tensor, positives: list[int], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        index_stats(scores, positives)


def test_combine_rewards() -> None:
    lam = RewardConfig(retrieval_weight=0.25)
    assert combine_rewards(2.0, -2.0, lam) == pytest.approx(0.75 * 2.0 + 0.25 * -2.0)
    assert combine_rewards(None, -2.0, lam) == -2.0  # pool misses the positive: index only
    assert combine_rewards(1.5, None, RewardConfig()) == 1.5  # the paper's reward
    assert combine_rewards(None, None, RewardConfig()) is None
    with pytest.raises(ConfigError, match="whole-index reward"):
        combine_rewards(1.0, None, lam)
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ConfigError, match="retrieval_weight"):
            RewardConfig(retrieval_weight=bad)


def _half_covered(n: int, seed: int) -> EvalDataset:
    """Pools of two non-positive colours for every other query: the full-image pool misses
    the positive there, the index of all six colours does not."""
    ds = _dataset(n, seed)
    pools = dict(ds.pools)
    rng = random.Random(seed)
    for q in ds.queries[::2]:
        others = [c for c, _ in ds.pools[q.id] if c not in q.positives]
        pools[q.id] = tuple((c, 0.0) for c in rng.sample(others, 2))
    return EvalDataset(ds.name, ds.queries, ds.kb, pools)


def test_training_set_with_an_index_keeps_uncovered_queries_and_rewards_them() -> None:
    scorer = FakeScorer()
    ds = _half_covered(12, 3)
    index = CandidateIndex.build(
        [ds.kb[k].to_candidate() for k in sorted(ds.kb)], scorer, progress=False
    )
    plain = build_policy_training_set(ds, scorer, ARCH, progress=False)
    ts = build_policy_training_set(ds, scorer, ARCH, progress=False, index=index)
    assert len(plain) == 6 and len(ts) == 12 and ts.num_dropped == 0
    assert ts.covered is not None and ts.covered.tolist() == [i % 2 == 1 for i in range(12)]
    assert ts.index_stats is not None and ts.index_stats.shape[:2] == ts.mask.shape
    # lam = 0: exactly the covered queries, with the same rewards as without an index
    only_pool = ts.for_reward(RewardConfig())
    assert only_pool.query_ids == plain.query_ids
    assert torch.equal(only_pool.reward_table()[0], plain.reward_table()[0])
    with pytest.raises(ConfigError, match="for_reward"):
        ts.reward_table()
    # one index entry recomputed from scratch: view embeddings against the index
    q = ds.queries[0]
    from region_rerank.croppers.proposal import ProposalPolicyCropper, build_policy_net

    cropper = ProposalPolicyCropper(scorer, (build_policy_net(ARCH), ARCH))
    views = cropper.policy_inputs([q.to_query()]).views[0]
    cols = [index.positions[p] for p in sorted(q.positives)]
    sims = scorer.score(views, index.embeddings())
    n_act = int(ts.mask[0].sum())
    lam = RewardConfig(retrieval_weight=0.5)
    rewards, _ = ts.for_reward(lam).reward_table(lam)
    want = index_rewards(index_stats(sims, cols), lam)[:n_act]
    assert rewards[0, :n_act].tolist() == pytest.approx(want, abs=1e-5)  # uncovered: index only
    both, _ = ts.reward_table(lam)
    i = 1  # a covered query: the mix of both rewards
    pool_r = plain.reward_table()[0][0]
    idx_r = index_rewards(ts.index_stats[i, : int(ts.mask[i].sum())], lam)
    assert both[i, 0] == pytest.approx(0.5 * float(pool_r[0]) + 0.5 * idx_r[0], abs=1e-5)


def test_training_with_the_retrieval_weight_runs_and_reports_index_r1() -> None:
    scorer = FakeScorer()
    sets = []
    for seed, n in ((4, 24), (5, 10)):
        ds = _half_covered(n, seed)
        index = CandidateIndex.build(
            [ds.kb[k].to_candidate() for k in sorted(ds.kb)], scorer, progress=False
        )
        sets.append(build_policy_training_set(ds, scorer, ARCH, progress=False, index=index))
    cfg = ProposalTrainingConfig(
        epochs=2,
        batch_queries=8,
        warmup_steps=1,
        sampling=GroupSamplingConfig(4),
        reward=RewardConfig(retrieval_weight=0.5),
    )
    result = train_policy(sets[0], sets[1], cfg)
    assert len(result.history) == 2 * 3  # all 24 queries, covered or not
    last = result.val_history[-1]
    assert 0.0 <= last["index_r1"] <= 1.0 and 0.0 <= last["cond_r1"] <= 1.0
    plain = ProposalTrainingConfig(epochs=1, batch_queries=8, sampling=GroupSamplingConfig(4))
    assert len(train_policy(sets[0], sets[1], plain).history) == 2  # 12 covered queries
    no_index = build_policy_training_set(_half_covered(8, 6), scorer, ARCH, progress=False)
    with pytest.raises(ConfigError, match="index of the KB"):
        train_policy(no_index, no_index, cfg)


def test_trl_reward_mixes_in_the_whole_index_reward() -> None:
    from PIL import Image

    from region_rerank.images import crop_pil
    from region_rerank.train.trl_reward import make_trl_reward
    from region_rerank.types import Box

    scorer = FakeScorer()
    image = Image.new("RGB", (90, 60), (0, 0, 255))
    image.paste((255, 0, 0), (60, 30, 90, 60))  # red square bottom-right
    kb = scorer.embed_texts(["blue", "green", "red", "white"])  # the index; red is row 2
    pool = kb[[0, 1]]  # a full-image pool that misses the red positive
    crop = (
        '<tool_call>{"name": "image_zoom_in_tool", '
        '"arguments": {"bbox_2d": [667, 500, 1000, 1000]}}</tool_call>'
    )
    lam = RewardConfig(retrieval_weight=0.5)
    with pytest.raises(ConfigError, match="index_embeddings"):
        make_trl_reward(scorer, lam)
    reward = make_trl_reward(scorer, lam, index_embeddings=kb)
    out = reward(
        prompts=None,
        completions=["NO_CROP_NEEDED", crop, crop, "<tool_call>bbox_2d []</tool_call>"],
        image=[image] * 4,
        candidate_embeddings=[pool, pool, kb, pool],
        is_positive=[[False, False], [False, False], [False, False, True, False], [False, False]],
        index_positive=[[2], [2], [2], [2]],
    )
    views = scorer.embed_images([image, crop_pil(image, Box(60, 30, 90, 60))])
    want = index_rewards(index_stats(scorer.score(views, kb), [2]), lam)
    assert out[0] == pytest.approx(want[0])  # pool misses the positive: index reward alone
    assert out[1] == pytest.approx(want[1]) and out[1] > 0  # the crop retrieves red first
    pool_r = region_reward(
        scorer.score(views[:1], kb)[0].tolist(),
        scorer.score(views[1:], kb)[0].tolist(),
        [False, False, True, False],
    )
    assert out[2] == pytest.approx(0.5 * pool_r + 0.5 * want[1])  # covered: the mix
    assert out[3] == -1.0  # malformed: the penalty on both sides
    with pytest.raises(ConfigError, match="index_positive"):
        reward(
            prompts=None,
            completions=["x"],
            image=[image],
            candidate_embeddings=[pool],
            is_positive=[[False, False]],
        )
