"""Per-query budgets: a time limit on the cropper and a length limit on the question.

:func:`call_with_timeout` runs a cropper call in a daemon worker thread and stops waiting
after the budget. Python cannot kill a thread: a call that overruns keeps running in the
background until it returns on its own, and its result is discarded. The thread is a daemon,
so it never blocks interpreter exit.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from region_rerank.errors import CropperTimeoutError
from region_rerank.types import Query

__all__ = ["call_with_timeout", "limit_question"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def call_with_timeout(fn: Callable[..., T], *args: Any, timeout: float | None, what: str) -> T:
    """Return ``fn(*args)``, or raise :class:`CropperTimeoutError` after ``timeout`` seconds.

    Args:
        fn: The call to run (in a worker thread, with the caller's context variables).
        args: Its positional arguments.
        timeout: Seconds to wait; ``None`` runs ``fn`` in the calling thread, unbounded.
        what: How the call is named in the error message.

    Raises:
        CropperTimeoutError: ``fn`` did not return in time (it keeps running, detached).
        BaseException: Whatever ``fn`` raised, unchanged.
    """
    if timeout is None:
        return fn(*args)
    outcome: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def work() -> None:
        try:
            outcome["value"] = ctx.run(fn, *args)
        except BaseException as exc:  # handed to the waiting thread, re-raised there
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="region-rerank-cropper", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise CropperTimeoutError(f"{what} did not finish within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def limit_question(query: Query, max_chars: int) -> Query:
    """``query`` with its question cut to ``max_chars`` characters (a warning is logged when
    it was longer). The caller's query is never modified; a new one is returned if cut."""
    if len(query.question) <= max_chars:
        return query
    logger.warning(
        "query %r: question of %d characters truncated to %d (RerankerConfig.max_question_chars)",
        query.id,
        len(query.question),
        max_chars,
    )
    return replace(query, question=query.question[:max_chars])
