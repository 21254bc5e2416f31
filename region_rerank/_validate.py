"""Small validators used by the configs' ``__post_init__``: each names the field and the
allowed values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from region_rerank.errors import ConfigError

__all__ = ["check_choice", "check_range"]


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
