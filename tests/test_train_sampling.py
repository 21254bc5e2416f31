"""Decision-balanced group sampling and group-relative advantages."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from region_rerank.errors import ConfigError
from region_rerank.train.sampling import (
    FULL_ACTION,
    GroupSamplingConfig,
    group_advantages,
    sample_group,
    sample_groups,
)


@settings(max_examples=120, deadline=None)
@given(
    weights=st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1.0)), min_size=2, max_size=10).filter(
        lambda w: w[0] > 0 and sum(w[1:]) > 0
    ),
    n=st.integers(2, 10),
    seed=st.integers(0, 10_000),
)
def test_balanced_groups_hold_both_kinds(weights: list[float], n: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    group = sample_group(torch.tensor(weights), n, balanced=True, generator=gen)
    assert group.shape == (n,)
    assert (group == FULL_ACTION).any() and (group != FULL_ACTION).any()
    # only actions with non-zero probability are drawn
    assert all(weights[int(a)] > 0 for a in group)


def test_balanced_even_when_the_policy_is_certain() -> None:
    gen = torch.Generator().manual_seed(0)
    # FULL has probability ~1: plain sampling gives all-FULL groups, balanced ones do not
    probs = torch.tensor([[1.0, 1e-9, 0.0, 1e-9]] * 50)
    plain = sample_groups(probs, 8, balanced=False, generator=gen)
    assert bool((plain == FULL_ACTION).all())
    balanced = sample_groups(probs, 8, balanced=True, generator=gen)
    assert bool(((balanced == FULL_ACTION).any(1) & (balanced != FULL_ACTION).any(1)).all())
    assert not bool((balanced == 2).any())  # the zero-probability region is never drawn
    # and the other way round: a policy that always crops still gets one FULL per group
    probs = torch.tensor([[0.0, 0.5, 0.5]] * 20)
    groups = sample_groups(probs, 4, balanced=True, generator=gen)
    assert bool(((groups == FULL_ACTION).sum(1) == 1).all())
    assert not bool((sample_groups(probs, 4, balanced=False, generator=gen) == 0).any())


def test_unbalanced_mode_can_produce_all_same_groups() -> None:
    gen = torch.Generator().manual_seed(1)
    probs = torch.tensor([[0.5, 0.5]] * 400)
    groups = sample_groups(probs, 2, balanced=False, generator=gen)
    same = (groups == FULL_ACTION).all(1) | (groups != FULL_ACTION).all(1)
    # P(all same) = 0.5 for n=2: about 200 of 400
    assert 150 < int(same.sum()) < 250
    assert int(same.sum()) > 0


def test_sampling_is_seeded_and_validated() -> None:
    probs = torch.tensor([0.2, 0.3, 0.5])
    a = sample_group(probs, 8, generator=torch.Generator().manual_seed(3))
    b = sample_group(probs, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="n >= 2"):
        sample_group(probs, 1)
    with pytest.raises(ConfigError, match="REGION"):
        sample_group(torch.tensor([1.0]), 4)
    with pytest.raises(ConfigError, match="non-zero"):
        sample_group(torch.tensor([1.0, 0.0]), 4)
    with pytest.raises(ConfigError, match="finite"):
        sample_group(torch.tensor([float("nan"), 1.0]), 4)
    assert sample_group(torch.tensor([1.0]), 3, balanced=False).tolist() == [0, 0, 0]
    with pytest.raises(ConfigError, match="group_size"):
        GroupSamplingConfig(group_size=1)
    assert GroupSamplingConfig(group_size=1, balanced=False).group_size == 1


def test_group_advantages_by_hand() -> None:
    r = torch.tensor([[1.0, 0.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    # mean 1.0 -> [0, -1, 2, -1]; a constant group -> zeros
    adv = group_advantages(r)
    assert adv.tolist() == [[0.0, -1.0, 2.0, -1.0], [0.0, 0.0, 0.0, 0.0]]
    # std (population) of [1, 0, 3, 0] = sqrt(1.5) = 1.224745
    scaled = group_advantages(r, scale_rewards=True, eps=0.0)
    assert scaled[0].tolist() == pytest.approx([0.0, -0.816497, 1.632993, -0.816497], abs=1e-5)
    assert group_advantages(r, scale_rewards=True)[1].tolist() == [0.0] * 4
