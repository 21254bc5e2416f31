"""Run a model over items in batches, halving the batch on out-of-memory errors.

A ``torch.OutOfMemoryError`` (CUDA / MPS) or a ``MemoryError`` (host) on a batch retries the
same items with half the batch size, down to one item; only an error on a single item
propagates. Batches after a halving keep the smaller size. Results are the same as with
the smaller batch size from the start.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["is_out_of_memory", "map_batches"]

logger = logging.getLogger(__name__)

R = TypeVar("R")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``MemoryError`` and ``torch.OutOfMemoryError`` (also when torch is absent)."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return oom is not None and isinstance(exc, oom)


def _release_cached_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def map_batches(
    fn: Callable[[Any], R], items: Sequence[Any] | Any, batch_size: int, *, what: str = "batch"
) -> list[R]:
    """``[fn(items[i:i + b]) for each batch]``, halving ``b`` on out-of-memory errors.

    Args:
        fn: Called with a slice of ``items`` (a list slice or a tensor slice).
        items: Anything sliceable with ``len`` (a list, a tensor).
        batch_size: The initial batch size (>= 1).
        what: Named in the warning logged on each halving.

    Returns:
        One result per call of ``fn``, in order; every item is covered exactly once.

    Raises:
        MemoryError, torch.OutOfMemoryError: Even a batch of one item ran out of memory.
    """
    size = max(1, int(batch_size))
    total = len(items)
    out: list[R] = []
    start = 0
    while start < total:
        chunk = items[start : start + size]
        try:
            out.append(fn(chunk))
        except Exception as exc:
            if size == 1 or not is_out_of_memory(exc):
                raise
            _release_cached_memory()
            size = max(1, size // 2)
            logger.warning("out of memory on a %s; retrying with batches of %d", what, size)
            continue
        start += len(chunk)
    return out
