"""``region-rerank bench compare``: two quality reports of the same scenes, paired per seed.

Two ``bench quality`` runs on the same seeds, test-split size and world options describe the
same scenes; the phrasing family may differ, since a family changes only how each question is
worded (:mod:`region_rerank.demo.phrasing`), and so may the first stage and the re-ranking
fusion. For every method in both reports, the comparison is the per-seed difference of one
figure (CondR@1 by default), reported as the drop ``BASE - OTHER`` in points (mean and sample
standard deviation over seeds, and each seed's value). This is how the cost of a held-out
wording family is measured::

    region-rerank bench quality --seeds 100,101,102 --phrasing train --json train.json
    region-rerank bench quality --seeds 100,101,102 --phrasing heldout --json heldout.json
    region-rerank bench compare train.json heldout.json

A drop measured this way removes what the scenes contribute to each seed's figure; the
difference of two means with their own sds would not.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from region_rerank.bench.quality import REPORT_FORMAT
from region_rerank.errors import ConfigError

__all__ = ["COMPARE_FORMAT", "compare_reports", "format_comparison", "load_report"]

#: Format tag of the JSON comparison.
COMPARE_FORMAT = "region-rerank-bench-compare/1"
#: Figures a comparison can be made on (per seed in every report).
FIGURES: tuple[str, ...] = ("cond_r1", "r1", "mrr", "coverage", "crop_rate", "kept_first")
#: World options allowed to differ between two reports of the same scenes.
_WORDING_ONLY = frozenset({"phrasing"})


def load_report(path: str | Path) -> dict[str, Any]:
    """A ``bench quality`` JSON report.

    Raises:
        ConfigError: The file is missing, is not JSON or is not a quality report.
    """
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the quality report {path}: {exc}") from exc
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        found = report.get("format") if isinstance(report, dict) else type(report).__name__
        raise ConfigError(f"{path} is not a {REPORT_FORMAT} report (format: {found!r})")
    return report


def _check_same_scenes(base: Mapping[str, Any], other: Mapping[str, Any]) -> None:
    for key in ("seeds", "n_test", "scorer", "pool_k"):
        if base.get(key) != other.get(key):
            raise ConfigError(
                f"the reports do not describe the same scenes: {key} is {base.get(key)!r} "
                f"in the first and {other.get(key)!r} in the second"
            )
    worlds = base.get("world") or {}, other.get("world") or {}
    differ = sorted(
        k for k in {*worlds[0], *worlds[1]} - _WORDING_ONLY if worlds[0].get(k) != worlds[1].get(k)
    )
    if differ:
        raise ConfigError(
            f"the reports do not describe the same scenes: world option(s) {differ} differ "
            f"({ {k: worlds[0].get(k) for k in differ} } against "
            f"{ {k: worlds[1].get(k) for k in differ} }); only the phrasing family may differ"
        )


def compare_reports(
    base: Mapping[str, Any], other: Mapping[str, Any], figure: str = "cond_r1"
) -> dict[str, Any]:
    """Per method in both reports: ``base - other`` on ``figure``, paired per seed.

    Args:
        base: The reference report (e.g. the training phrasing families).
        other: The report compared with it (e.g. a held-out family), on the same scenes.
        figure: One of :data:`FIGURES`.

    Returns:
        ``{"format", "figure", "seeds", "world": [base's, other's], "methods": {NAME:
        {"base", "other", "drop", "drop_sd", "per_seed": {SEED: drop}}}}``; drops in points
        (x100). A seed on which either figure is undefined (no covered query) is left out of
        that method's drop, and ``per_seed`` shows it as ``None``; a method with no seed left
        has ``drop`` ``None``. ``drop_sd`` is ``None`` with fewer than two seeds.

    Raises:
        ConfigError: An unknown figure, reports of different scenes, or no method in both.
    """
    if figure not in FIGURES:
        raise ConfigError(f"unknown figure {figure!r}; allowed: {list(FIGURES)}")
    _check_same_scenes(base, other)
    names = [n for n in base["methods"] if n in other["methods"]]
    if not names:
        raise ConfigError(
            f"no method is in both reports (first: {sorted(base['methods'])}, second: "
            f"{sorted(other['methods'])})"
        )
    methods: dict[str, Any] = {}
    for name in names:
        mine, theirs = base["methods"][name], other["methods"][name]
        per_seed: dict[str, float | None] = {}
        for seed in map(str, base["seeds"]):
            a = mine["per_seed"][seed].get(figure)
            b = theirs["per_seed"][seed].get(figure)
            per_seed[seed] = None if a is None or b is None else 100.0 * (a - b)
        drops = [d for d in per_seed.values() if d is not None]
        methods[name] = {
            "base": mine.get(figure),
            "other": theirs.get(figure),
            "drop": statistics.fmean(drops) if drops else None,
            "drop_sd": statistics.stdev(drops) if len(drops) > 1 else None,
            "per_seed": per_seed,
        }
    return {
        "format": COMPARE_FORMAT,
        "figure": figure,
        "seeds": list(base["seeds"]),
        "world": [base.get("world") or {}, other.get("world") or {}],
        "methods": methods,
    }


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_comparison(comparison: Mapping[str, Any], names: tuple[str, str]) -> str:
    """A Markdown table of :func:`compare_reports`'s result; ``names`` label the reports."""
    fig = comparison["figure"]
    lines = [
        f"{fig}: {names[0]} (world {comparison['world'][0] or 'default'}) against {names[1]} "
        f"(world {comparison['world'][1] or 'default'}), seeds {comparison['seeds']}; drop = "
        "first - second in points, paired per seed",
        "",
        "| method | first | second | drop, points (mean ± sd) | per seed |",
        "|---|---:|---:|---:|---|",
    ]
    for name, m in comparison["methods"].items():
        drop = _num(m["drop"], ".1f")
        if m["drop_sd"] is not None:
            drop += f" ± {m['drop_sd']:.1f}"
        seeds = ", ".join(_num(d, ".1f") for d in m["per_seed"].values())
        lines.append(
            f"| {name} | {_num(m['base'], '.3f')} | {_num(m['other'], '.3f')} | {drop} | {seeds} |"
        )
    return "\n".join(lines) + "\n"
