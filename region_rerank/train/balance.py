"""Decision-balanced groups for a generative policy (docs/method.md section 4, paper version).

After TRL samples a group of ``N`` answers for one query, :func:`plan_balance` says which
members to replace so that the group holds at least one FULL and one REGION answer: a group
without FULL gets one REGION member replaced by the canonical FULL answer
(``NO_CROP_NEEDED``, the only FULL answer the format allows); a group without REGION gets
one FULL member replaced by an answer sampled from the policy with the REGION opening
(``<tool_call>``) forced, i.e. a draw from the policy restricted to REGION. The replaced
member is chosen uniformly at random. :func:`answer_kind` classifies answers with the same
parser the cropper uses.

**No importance correction, by design.** The injected answers are trained as if the policy
had sampled them: their log-probabilities enter the GRPO loss with no ratio between the
balanced and the sampling distribution. This is the reference method's choice (its goal is
that every group contrasts the two decisions, so the advantage of cropping is always
estimated); it biases the gradient towards the under-sampled decision, in the direction
the balancing intends. A forced REGION answer is still a sample of the policy restricted to
REGION, so only the FULL/REGION proportion is changed, not the boxes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from region_rerank.croppers.vlm_output import parse_policy_output
from region_rerank.errors import ConfigError

__all__ = ["BalancePlan", "answer_kind", "plan_balance"]


def answer_kind(text: str) -> bool:
    """``True`` when an answer is a REGION action (the policy says it crops, even with a
    malformed box), ``False`` for FULL."""
    return parse_policy_output(text).wants_crop


@dataclass(frozen=True)
class BalancePlan:
    """Rows to overwrite: ``to_full`` get the FULL answer, ``to_region`` a forced REGION
    sample (indices into the flat list of ``groups x N`` answers)."""

    to_full: tuple[int, ...]
    to_region: tuple[int, ...]


def plan_balance(is_region: Sequence[bool], group_size: int, rng: random.Random) -> BalancePlan:
    """Plan the replacements that make every consecutive group of ``group_size`` answers
    hold both kinds.

    Raises:
        ConfigError: ``group_size < 2`` or a length that is not a multiple of it.
    """
    if group_size < 2:
        raise ConfigError(f"a balanced group needs group_size >= 2, got {group_size}")
    if len(is_region) % group_size:
        raise ConfigError(
            f"{len(is_region)} answers do not split into whole groups of {group_size}"
        )
    to_full: list[int] = []
    to_region: list[int] = []
    for start in range(0, len(is_region), group_size):
        kinds = [bool(k) for k in is_region[start : start + group_size]]
        if all(kinds):
            to_full.append(start + rng.randrange(group_size))
        elif not any(kinds):
            to_region.append(start + rng.randrange(group_size))
    return BalancePlan(tuple(to_full), tuple(to_region))
