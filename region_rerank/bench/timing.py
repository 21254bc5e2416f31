"""Timing helpers: medians over repeated runs and the time spent in model forward passes.

Every figure of the speed benchmark is a median over repeated runs; every comparison is a
ratio of two medians measured in the same process, one after the other.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from region_rerank.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["median_seconds", "paired_medians", "ForwardTimer"]


def median_seconds(
    fn: Callable[[], Any],
    repeats: int,
    *,
    warmup: int = 1,
    setup: Callable[[], Any] | None = None,
) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after ``warmup`` untimed runs.

    Args:
        fn: The work to time.
        repeats: Timed runs (>= 1).
        warmup: Untimed runs first (lazy loading, allocator warm-up).
        setup: Called untimed before every run (e.g. to empty a cache).
    """
    if repeats < 1:
        raise ConfigError(f"repeats={repeats} must be >= 1")
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _timed(fn: Callable[[], Any], setup: Callable[[], Any] | None) -> float:
    if setup is not None:
        setup()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_medians(
    a: Callable[[], Any],
    b: Callable[[], Any],
    repeats: int,
    *,
    warmup: int = 1,
    setup_a: Callable[[], Any] | None = None,
    setup_b: Callable[[], Any] | None = None,
) -> tuple[float, float, float]:
    """Time ``a`` and ``b`` interleaved (``a b``, then ``b a``, ...) so that a burst of load
    from other processes hits both sides of a comparison.

    Returns:
        ``(median seconds of a, median seconds of b, median of the per-pair ratios a / b)``.
    """
    if repeats < 1:
        raise ConfigError(f"repeats={repeats} must be >= 1")
    for _ in range(warmup):
        _timed(a, setup_a)
        _timed(b, setup_b)
    ta, tb = [], []
    for i in range(repeats):
        if i % 2:
            tb.append(_timed(b, setup_b))
            ta.append(_timed(a, setup_a))
        else:
            ta.append(_timed(a, setup_a))
            tb.append(_timed(b, setup_b))
    ratios = [x / y for x, y in zip(ta, tb)]
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


class ForwardTimer:
    """Sum the wall time spent inside the ``forward`` of the given modules.

    Forward pre- and post-hooks are registered on each module while the timer is active
    (``with timer: ...``); nested calls (one timed module calling another) are counted
    once, from the outermost entry to its exit.

    Args:
        modules: The model modules whose forward passes make the "model floor".
    """

    def __init__(self, modules: Iterable[torch.nn.Module]) -> None:
        self.modules = list(modules)
        self.seconds = 0.0
        self.calls = 0
        self._depth = 0
        self._start = 0.0
        self._handles: list[Any] = []

    def reset(self) -> None:
        """Zero the accumulated time and call count."""
        self.seconds = 0.0
        self.calls = 0

    def _pre(self, *_: Any) -> None:
        if self._depth == 0:
            self._start = time.perf_counter()
        self._depth += 1

    def _post(self, *_: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._start
            self.calls += 1

    def __enter__(self) -> ForwardTimer:
        for module in self.modules:
            self._handles.append(module.register_forward_pre_hook(self._pre))
            self._handles.append(module.register_forward_hook(self._post))
        return self

    def __exit__(self, *_: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._depth = 0
