"""Small validators used by the configs' ``__post_init__``: each names the field and the
allowed values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from region_rerank.errors import ConfigError, InputTypeError
from region_rerank.types import Candidate, CropDecision, Query

__all__ = ["check_choice", "check_range", "check_int", "check_rerank_inputs"]


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise :class:`ConfigError` unless ``low <= value <= high`` (bounds optional)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if not ok:
        lo = "-inf" if low is None else ("[" if low_inclusive else "(") + str(low)
        hi = "inf" if high is None else str(high) + ("]" if high_inclusive else ")")
        raise ConfigError(f"{name}={value!r} is out of range; allowed {lo}, {hi}")


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an ``int`` (not a bool) in
    ``[low, high]`` (bounds optional)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} must be an int")
    check_range(name, value, low, high)


def check_rerank_inputs(
    queries: Sequence[Query],
    candidates: Sequence[Sequence[Candidate]],
    decisions: Sequence[CropDecision] | None = None,
) -> tuple[list[Query], list[list[Candidate]]]:
    """Check the arguments of ``CroppedReranker.rerank_batch``; return them as new lists.

    Raises:
        ConfigError: The numbers of queries, candidate lists and decisions differ.
        InputTypeError: An entry is not a :class:`Query` / :class:`Candidate`.
    """
    query_list = list(queries)
    pools = [list(pool) for pool in candidates]
    if len(query_list) != len(pools):
        raise ConfigError(f"got {len(query_list)} queries but {len(pools)} candidate lists")
    if decisions is not None and len(decisions) != len(query_list):
        raise ConfigError(f"got {len(query_list)} queries but {len(decisions)} decisions")
    for query in query_list:
        if not isinstance(query, Query):
            raise InputTypeError(f"expected Query objects, got {type(query).__name__}")
    for pool in pools:
        for cand in pool:
            if not isinstance(cand, Candidate):
                raise InputTypeError(
                    f"expected Candidate objects, got {type(cand).__name__}; wrap entries "
                    "with region_rerank.Candidate(id=..., text=..., images=...)"
                )
    return query_list, pools
