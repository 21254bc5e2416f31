"""The r-GRPO reward against hand-computed cases (docs/method.md section 4)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from region_rerank.errors import ConfigError
from region_rerank.eval.metrics import mrr, ndcg_at_k
from region_rerank.images import crop_pil
from region_rerank.testing import FakeScorer
from region_rerank.train.rewards import (
    NoPositiveError,
    RewardConfig,
    full_reward,
    malformed_reward,
    ranking_stats,
    region_reward,
)
from region_rerank.train.trl_reward import make_trl_reward
from region_rerank.types import Box

POS = [False, True, False, False]
FULL = [0.9, 0.5, 0.7, 0.1]  # order 0, 2, 1, 3 -> first positive at rank 3
CROP = [0.2, 0.8, 0.6, 0.3]  # order 1, 2, 3, 0 -> rank 1
WORSE = [0.9, 0.1, 0.8, 0.7]  # order 0, 2, 3, 1 -> rank 4


def test_ranking_stats_by_hand() -> None:
    s = ranking_stats(FULL, POS)
    # rank 3: MRR 1/3; NDCG (1/log2(4)) / (1/log2(2)) = 0.5; margin 0.5 - max(0.9, 0.7, 0.1)
    assert s.rank_first_positive == 3
    assert s.mrr == pytest.approx(1 / 3)
    assert s.ndcg == pytest.approx(0.5)
    assert s.margin == pytest.approx(-0.4)
    c = ranking_stats(CROP, POS)
    # rank 1: MRR 1, NDCG 1, margin 0.8 - max(0.2, 0.6, 0.3) = 0.2
    assert (c.rank_first_positive, c.mrr, c.ndcg) == (1, 1.0, 1.0)
    assert c.margin == pytest.approx(0.2)


def test_margin_and_tie_conventions() -> None:
    # no negative: margin 1.0; no positive: everything 0 / None
    assert ranking_stats([0.3, 0.5], [True, True]) == (1.0, 1.0, 1, 1.0)
    assert ranking_stats([0.3, 0.5], [False, False]) == (0.0, 0.0, None, 0.0)
    # ties keep the pool order (stable sort): the positive at index 1 ranks second
    assert ranking_stats([0.5, 0.5], [False, True]).rank_first_positive == 2
    # two positives: margin = mean(0.8, 0.4) - 0.5 = 0.1; NDCG = (1 + 1/log2(3)) / (1 + 1/log2(3))
    s = ranking_stats([0.8, 0.5, 0.4], [True, False, True])
    assert s.margin == pytest.approx(0.1)
    # DCG 1 + 1/log2(4) = 1.5; ideal 1 + 1/log2(3) = 1.63093
    assert s.ndcg == pytest.approx(1.5 / (1 + 1 / math.log2(3)))


def test_region_reward_relative_by_hand() -> None:
    # dMRR = 1 - 1/3 = 0.666667, dNDCG = 1 - 0.5 = 0.5, dRank = ln(3+1) - ln(1+1) = ln 2,
    # dMargin = 0.2 - (-0.4) = 0.6
    # mix = 0.2*0.666667 + 0.2*0.5 + 0.2*0.693147 + 0.4*0.6 = 0.611963 -> x5 = 3.059814
    assert region_reward(FULL, CROP, POS) == pytest.approx(3.059814, abs=1e-6)
    # without the margin term: 0.371963 x 5 = 1.859814
    no_margin = RewardConfig(use_margin=False)
    assert region_reward(FULL, CROP, POS, no_margin) == pytest.approx(1.859814, abs=1e-6)


def test_region_reward_floor_by_hand() -> None:
    # WORSE: rank 4 -> MRR 0.25, NDCG 1/log2(5) = 0.430677, margin 0.1 - 0.9 = -0.8
    # dMRR -0.083333, dNDCG -0.069323, dRank ln4 - ln5 = -0.223144, dMargin -0.4
    # mix = -0.016667 - 0.013865 - 0.044629 - 0.16 = -0.235160 < floor -0.05 -> 5 * -0.05
    assert region_reward(FULL, WORSE, POS) == pytest.approx(-0.25)
    # the same crop as the full image: every delta 0 -> 0
    assert region_reward(FULL, FULL, POS) == 0.0


def test_absolute_variant_by_hand() -> None:
    # crop's own metrics: MRR 1, NDCG 1, rank term ln2 - ln(1+1) = 0, margin 0.2
    # mix = 0.2 + 0.2 + 0 + 0.08 = 0.48 -> 2.4; the full scores are not needed
    cfg = RewardConfig(variant="absolute")
    assert region_reward(None, CROP, POS, cfg) == pytest.approx(2.4)
    # WORSE: 0.2*0.25 + 0.2*0.430677 + 0.2*(ln2 - ln5) + 0.4*(-0.8) = -0.579553 -> floor
    assert region_reward(None, WORSE, POS, cfg) == pytest.approx(-0.25)


def test_full_and_malformed_rewards() -> None:
    assert full_reward(FULL, POS) == 0.0  # full ranks the positive third
    assert full_reward(CROP, POS) == 1.0  # "full" ranks it first
    assert full_reward(CROP, POS, RewardConfig(full_first=2.0)) == 2.0
    assert region_reward(FULL, None, POS) == -1.0
    assert malformed_reward() == -1.0


def test_no_positive_raises() -> None:
    with pytest.raises(NoPositiveError):
        region_reward(FULL, CROP, [False] * 4)
    with pytest.raises(NoPositiveError):
        full_reward(FULL, [False] * 4)
    with pytest.raises(ValueError, match="positive flags"):
        ranking_stats([1.0], [True, False])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": (0.2, 0.2, 0.2)}, "4 values"),
        ({"weights": (0.2, -0.1, 0.2, 0.4)}, "ndcg"),
        ({"floor": 0.1}, "floor"),
        ({"scale": 0.0}, "scale"),
        ({"variant": "delta"}, "variant"),
        ({"malformed_penalty": math.nan}, "malformed_penalty"),
    ],
)
def test_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RewardConfig(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(st.tuples(st.floats(-1, 1), st.booleans()), min_size=1, max_size=12),
)
def test_stats_agree_with_eval_metrics(data: list[tuple[float, bool]]) -> None:
    scores = [s for s, _ in data]
    pos = [p for _, p in data]
    ids = [str(i) for i in range(len(data))]
    ranked = [ids[i] for i in sorted(range(len(data)), key=lambda i: -scores[i])]
    positives = {ids[i] for i, p in enumerate(pos) if p}
    s = ranking_stats(scores, pos)
    assert s.mrr == pytest.approx(mrr(ranked, positives))
    assert s.ndcg == pytest.approx(ndcg_at_k(ranked, positives))
    if any(pos):
        # a crop identical to the full image earns 0; the reward is never below s * floor
        assert region_reward(scores, scores, pos) == 0.0
        assert region_reward(scores, scores[::-1], pos) >= 5 * -0.05


def _scene() -> Image.Image:
    img = Image.new("RGB", (90, 60), (0, 0, 255))
    img.paste((255, 0, 0), (60, 30, 90, 60))  # red square bottom-right
    return img


def test_trl_reward_uses_real_rankings() -> None:
    scorer = FakeScorer()
    cands = scorer.embed_texts(["blue", "red"])  # pool: a blue entry, the red positive
    reward = make_trl_reward(scorer)
    image = _scene()
    crop = (
        '<tool_call>{"name": "image_zoom_in_tool", '
        '"arguments": {"bbox_2d": [667, 500, 1000, 1000]}}</tool_call>'
    )
    completions = [
        "NO_CROP_NEEDED",
        crop,
        [{"role": "assistant", "content": crop}],  # conversational format
        '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": []}}</tool_call>',
        "<tool_call>bbox_2d [900, 900, 100, 100]</tool_call>",  # inverted
        crop,
    ]
    n = len(completions)
    out = reward(
        prompts=[None] * n,
        completions=completions,
        image=[image] * n,
        candidate_embeddings=[cands] * n,
        is_positive=[[False, True]] * (n - 1) + [[False, False]],
    )
    full = scorer.score(scorer.embed_images([image]), cands)[0].tolist()
    crop_scores = scorer.score(scorer.embed_images([crop_pil(image, Box(60, 30, 90, 60))]), cands)
    expected = region_reward(full, crop_scores[0].tolist(), [False, True])
    # the full image is mostly blue: the blue entry ranks first -> FULL earns 0
    assert out[0] == 0.0
    # the crop is all red: red first; dMRR 0.5, dNDCG 1 - 1/log2(3), dRank ln3 - ln2 and a
    # margin gain of about 1 - (0.196 - 0.981): about 5 * 0.97
    assert out[1] == pytest.approx(expected) and out[2] == pytest.approx(expected)
    assert out[1] == pytest.approx(4.84, abs=0.1)
    assert out[3] == -1.0 and out[4] == -1.0  # malformed / inverted box
    assert out[5] is None  # no positive in the pool: no reward
    # precomputed full scores give the same rewards
    again = reward(
        prompts=None,
        completions=completions[:2],
        image=[image] * 2,
        candidate_embeddings=[cands] * 2,
        is_positive=[[False, True]] * 2,
        full_scores=[full] * 2,
    )
    assert again == pytest.approx(out[:2])
    with pytest.raises(ValueError, match="candidate_embeddings"):
        reward(prompts=None, completions=["x"], image=[image], is_positive=[[True]])


def test_completion_text_restores_parsed_tool_calls() -> None:
    from region_rerank.croppers.vlm_output import parse_policy_output
    from region_rerank.train.trl_reward import completion_text

    call = {"function": {"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [1, 2, 30, 40]}}}
    message = [{"role": "assistant", "content": "", "tool_calls": [call]}]
    parsed = parse_policy_output(completion_text(message))
    assert parsed.kind == "region" and parsed.coords == (1.0, 2.0, 30.0, 40.0)
    assert completion_text([{"role": "assistant", "content": "NO_CROP_NEEDED"}]) == "NO_CROP_NEEDED"
    parts = [
        {"role": "assistant", "content": [{"type": "text", "text": "NO_CROP"}, {"text": "_NEEDED"}]}
    ]
    assert completion_text(parts) == "NO_CROP_NEEDED"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_score_gives_a_finite_reward(bad: float) -> None:
    """Issue 13 item 10: a NaN score used to give a NaN reward."""
    from region_rerank.train.rewards import RewardConfig, ranking_stats, region_reward

    pos = [False, True, False]
    reward = region_reward([0.1, 0.3, 0.2], [0.5, bad, 0.1], pos, RewardConfig())
    assert math.isfinite(reward)
    # The unscorable positive ranks last, like the re-ranker ranks it.
    assert ranking_stats([0.5, bad, 0.1], pos).rank_first_positive == 3
    assert math.isfinite(region_reward([bad] * 3, [bad] * 3, pos, RewardConfig()))


def test_qwen3_vl_moe_has_a_coordinate_frame() -> None:
    from region_rerank.boxes import CoordFrame
    from region_rerank.croppers.vlm_prompt import resolve_frame

    assert resolve_frame("auto", "qwen3_vl_moe") is CoordFrame.NORM_1000
