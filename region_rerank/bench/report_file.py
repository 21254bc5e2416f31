"""Writing a bench report: indented, key-sorted JSON ending with a newline, parent folders
created."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_report"]


def write_report(path: str | os.PathLike[str], report: Any) -> Path:
    """Write ``report`` as JSON to ``path`` (folders made as needed) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out
