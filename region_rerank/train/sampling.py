"""Decision-balanced group sampling and group-relative advantages (docs/method.md section 4).

Actions are indexed with FULL at index 0 and the REGION actions (proposals) after it.

* :func:`sample_group` draws a group of ``N`` actions from the policy's probabilities.
  With ``balanced=True`` (the paper) every group of ``N >= 2`` holds at least one FULL
  and one REGION action: ``N`` actions are drawn i.i.d.; if one kind is missing, one
  randomly chosen member is replaced by a draw from the policy restricted to the missing
  kind (FULL itself, or a REGION from the renormalised region probabilities). With
  ``balanced=False`` (the reference code) the ``N`` i.i.d. draws are kept as they are, so
  a confident policy yields all-FULL or all-REGION groups whose advantages are all zero.
* :func:`group_advantages` subtracts the group mean; dividing by the group standard
  deviation is optional and off by default (``scale_rewards=False``, as the reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from region_rerank._validate import check_int, check_range
from region_rerank.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "FULL_ACTION",
    "GroupSamplingConfig",
    "sample_group",
    "sample_groups",
    "group_advantages",
]

#: Index of the FULL action in every action vector.
FULL_ACTION = 0


@dataclass(frozen=True)
class GroupSamplingConfig:
    """How groups are drawn and advantages computed.

    Attributes:
        group_size: Actions per query (``N``; the paper uses 8, the reference code 4).
        balanced: Decision-balanced groups (both FULL and REGION in each group).
        scale_rewards: Divide advantages by the group standard deviation.
        eps: Added to the standard deviation when ``scale_rewards`` is on.
    """

    group_size: int = 8
    balanced: bool = True
    scale_rewards: bool = False
    eps: float = 1e-4

    def __post_init__(self) -> None:
        check_int("group_size", self.group_size, 1)
        if self.balanced and self.group_size < 2:
            raise ConfigError(
                f"group_size={self.group_size} cannot hold both FULL and REGION; use >= 2 "
                "or balanced=False"
            )
        check_range("eps", self.eps, 0.0)


def sample_group(
    probs: torch.Tensor,
    n: int,
    *,
    balanced: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``n`` action indices for one query.

    Args:
        probs: ``A`` probabilities (FULL at index 0, then the regions; need not sum to 1).
        n: Group size.
        balanced: Make the group hold both kinds (needs ``n >= 2`` and ``A >= 2``).
        generator: Random generator (for reproducibility).

    Returns:
        A ``n`` long tensor of action indices.

    Raises:
        ConfigError: Bad ``n`` or probabilities, or a balanced group that cannot be formed.
    """
    return sample_groups(probs[None], n, balanced=balanced, generator=generator)[0]


def sample_groups(
    probs: torch.Tensor,
    n: int,
    *,
    balanced: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Batched :func:`sample_group`: ``probs`` is ``B x A`` (zero for padded actions);
    returns ``B x n`` action indices."""
    import torch

    check_int("n", n, 1)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise ConfigError(f"probs must be B x A with A >= 1, got shape {tuple(probs.shape)}")
    p = probs.detach().float().clamp_min(0.0)
    if not bool(torch.isfinite(p).all()) or bool((p.sum(1) <= 0).any()):
        raise ConfigError("probs must be finite, non-negative, with a positive sum per row")
    actions = torch.multinomial(p, n, replacement=True, generator=generator)
    if not balanced:
        return actions
    if n < 2 or p.shape[1] < 2:
        raise ConfigError(
            f"a balanced group needs n >= 2 and at least one REGION action (n={n}, "
            f"actions={p.shape[1]})"
        )
    region_p = p[:, 1:]
    no_region = region_p.sum(1) <= 0
    if bool(no_region.any()):
        raise ConfigError("a balanced group needs a REGION action with non-zero probability")
    is_full = actions == FULL_ACTION
    missing_full = ~is_full.any(1)
    missing_region = is_full.all(1)
    slot = torch.randint(0, n, (p.shape[0],), generator=generator)
    fix = missing_full | missing_region
    if bool(fix.any()):
        region_draw = torch.multinomial(region_p, 1, generator=generator)[:, 0] + 1
        replacement = torch.where(missing_full, torch.zeros_like(region_draw), region_draw)
        rows = torch.nonzero(fix)[:, 0]
        actions[rows, slot[rows]] = replacement[rows]
    return actions


def group_advantages(
    rewards: torch.Tensor, *, scale_rewards: bool = False, eps: float = 1e-4
) -> torch.Tensor:
    """Group-relative advantages over the last dimension: ``reward - group mean``,
    divided by ``group std + eps`` (unbiased=False) when ``scale_rewards``."""
    centred = rewards - rewards.mean(-1, keepdim=True)
    if scale_rewards:
        return centred / (rewards.std(-1, unbiased=False, keepdim=True) + eps)
    return centred
