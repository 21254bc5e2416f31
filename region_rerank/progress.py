"""Progress bars: tqdm on stderr, silent when disabled, under ``TQDM_DISABLE`` or when
stderr is not a terminal (so logs and CI stay clean)."""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(total: int | None, desc: str, enabled: bool = True, unit: str = "q") -> Any:
    """A tqdm bar on stderr, silent when ``enabled`` is false, ``TQDM_DISABLE`` is set to a
    true value, or stderr is not a terminal. ``total=None``: a counter without a total."""
    from tqdm.auto import tqdm

    env = os.environ.get("TQDM_DISABLE", "").strip().lower()
    off = not enabled or env not in ("", "0", "false", "no") or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=off, unit=unit, dynamic_ncols=True)
