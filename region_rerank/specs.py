"""The spec registry, joined: every cropper and scorer spec, for the CLI help and the docs.

Example:
    >>> from region_rerank.specs import usage_line
    >>> usage_line("scorer")
    'clip[:MODEL] | st:MODEL | cross:MODEL | demo[:WEIGHTS] | fake'
"""

from __future__ import annotations

from region_rerank.croppers.specs import CROPPERS
from region_rerank.scorers.specs import SCORERS
from region_rerank.spec_registry import ComponentSpec

__all__ = ["registry", "usage_line", "markdown_table"]


def registry(what: str) -> dict[str, ComponentSpec]:
    """The registry of ``"cropper"`` or ``"scorer"`` specs."""
    return CROPPERS if what == "cropper" else SCORERS


def usage_line(what: str, *, exclude: tuple[str, ...] = ()) -> str:
    """``"full | center[:FRACTION] | ..."`` for the CLI help."""
    return " | ".join(e.usage for e in registry(what).values() if e.kind not in exclude)


def markdown_table(what: str) -> str:
    """The specs of ``what`` as a Markdown table (spec, uses the scorer, what it is)."""
    rows = ["| spec | uses the scorer | what |", "|---|---|---|"]
    for e in registry(what).values():
        rows.append(f"| `{e.usage}` | {'yes' if e.needs_scorer else ''} | {e.help} |")
    return "\n".join(rows) + "\n"
