"""Row-level reading helpers shared by the dataset loaders (internal).

Each loader reads rows, turns a problem in one row into a :class:`DatasetFormatError` that
names the file, the 1-based line and what is wrong, and hands it to a :class:`RowIssues`
collector, which raises it (strict) or skips and counts the row (lenient).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from region_rerank.errors import DatasetFormatError, InvalidBoxError
from region_rerank.eval.json_stream import RowProblem, iter_jsonl
from region_rerank.types import Box, ImageLike

__all__ = ["DatasetFormatError", "RowProblem", "RowIssues", "iter_jsonl"]

logger = logging.getLogger("region_rerank.eval.datasets")

#: Image strings kept verbatim (never resolved against the dataset folder).
URL_PREFIXES = ("http://", "https://", "data:", "file://")


class RowIssues:
    """Raise row errors (strict) or skip and count them (lenient)."""

    def __init__(self, lenient: bool, max_reasons: int = 5) -> None:
        self.lenient = lenient
        self.max_reasons = max_reasons
        self.skipped = 0
        self.reasons: list[str] = []

    def report(self, error: DatasetFormatError) -> None:
        """Raise ``error`` in strict mode; otherwise count it and keep its text."""
        if not self.lenient:
            raise error
        self.skipped += 1
        if len(self.reasons) < self.max_reasons:
            self.reasons.append(str(error))

    def log_summary(self, what: str) -> None:
        """Log one warning with the count and the first few reasons (lenient mode)."""
        if self.skipped:
            logger.warning(
                "%s: skipped %d malformed row(s); first reasons: %s",
                what,
                self.skipped,
                "; ".join(self.reasons),
            )


def require_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RowProblem(f"expected a JSON object, got {type(value).__name__}")
    return value


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def get_id(obj: dict[str, Any], key: str = "id") -> str:
    """A required non-empty string id (integers are accepted and converted)."""
    if key not in obj:
        raise RowProblem(f"missing required field {key!r}")
    value = obj[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise RowProblem(f"field {key!r} must be a non-empty string, got {_type_name(value)}")
    return value


def get_str(obj: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    if key not in obj:
        if required:
            raise RowProblem(f"missing required field {key!r}")
        return None
    value = obj[key]
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise RowProblem(f"field {key!r} must be a string, got {_type_name(value)}")
    return value


def req_str(obj: dict[str, Any], key: str) -> str:
    """A required string field (may be empty)."""
    value = get_str(obj, key)
    assert value is not None
    return value


def get_str_list(obj: dict[str, Any], key: str, *, required: bool = True) -> list[str]:
    if key not in obj or (obj[key] is None and not required):
        if required:
            raise RowProblem(f"missing required field {key!r}")
        return []
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RowProblem(f"field {key!r} must be a list of strings, got {_type_name(value)}")
    return value


def get_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RowProblem(f"{what} must be a number, got {_type_name(value)}")
    if not math.isfinite(value):
        raise RowProblem(f"{what} must be finite, got {value!r}")
    return float(value)


def get_box(obj: dict[str, Any], key: str = "box") -> Box | None:
    """Optional ``[x1, y1, x2, y2]`` in original-image pixels."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 4:
        got = f"{len(value)} values" if isinstance(value, list) else _type_name(value)
        raise RowProblem(f"field {key!r} must be [x1, y1, x2, y2] (4 numbers), got {got}")
    coords = [get_number(v, f"{key} coordinate") for v in value]
    try:
        return Box(*coords)
    except InvalidBoxError as exc:
        raise RowProblem(f"field {key!r}: {exc}") from None


def resolve_image(value: str, folder: Path) -> ImageLike:
    """URLs and data URIs stay strings; paths become :class:`Path`, relative ones are
    resolved against ``folder``."""
    if value.lower().startswith(URL_PREFIXES):
        return value
    path = Path(value)
    if not path.is_absolute():
        path = Path(os.path.normpath(folder / path))
    return path
