"""The report of an evaluation run: ``metrics.json``, ``metrics.md``, a bar chart comparing
methods (``methods.png``) and a grid of example queries (``examples.png``).

matplotlib is an optional dependency (the ``demo`` extra). It is imported lazily, drawn
with the Agg canvas through :class:`matplotlib.figure.Figure` (no pyplot, no global
backend change); when it is missing each plot is skipped with a logged warning.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from region_rerank._optional import install_hint
from region_rerank.eval._schema import EvalQuery
from region_rerank.eval.metrics import DEFAULT_COLUMNS, format_markdown_table

__all__ = ["BAR_METRICS", "have_matplotlib", "plot_method_bars", "plot_examples", "write_report"]

logger = logging.getLogger(__name__)

#: Metrics compared in the bar chart.
BAR_METRICS: tuple[str, ...] = ("CondR@1", "MRR", "R@1", "coverage")
_GT_COLOR = "white"  # drawn dashed with a black stroke: visible on any image, not a tab10 colour
_THUMB_SIDE = 384


def have_matplotlib(what: str = "plots") -> bool:
    """True when matplotlib is importable; otherwise log a warning naming the install."""
    if importlib.util.find_spec("matplotlib") is not None:
        return True
    logger.warning("matplotlib is not installed, skipping %s: %s", what, install_hint("matplotlib"))
    return False


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_method_bars(
    results: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    *,
    metrics: Sequence[str] = BAR_METRICS,
    title: str = "",
) -> Path | None:
    """Grouped bar chart: one group per metric, one bar per method (values in [0, 1]).

    Args:
        results: Method -> metrics (as from :func:`~region_rerank.eval.metrics.compute_metrics`).
        path: PNG to write.
        metrics: Metric keys to compare; a missing or ``None`` value draws no bar.
        title: Figure title.

    Returns:
        The path written, or ``None`` when matplotlib is missing.
    """
    if not have_matplotlib("the method bar chart"):
        return None
    from matplotlib.figure import Figure

    names = list(results)
    fig = Figure(figsize=(max(6.0, 1.6 * len(metrics) + 0.4 * len(names)), 4.2), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(names))
    for j, (name, color) in enumerate(zip(names, _colors(len(names)))):
        xs, ys = [], []
        for i, key in enumerate(metrics):
            value = results[name].get(key)
            if isinstance(value, (int, float)):
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(float(value))
        bars = ax.bar(xs, ys, width=width, color=color, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(range(len(metrics)), list(metrics))
    ax.set_ylim(0.0, 1.1)
    ax.set_ylabel("score")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    logger.info("wrote %s", out)
    return out


def _pick_examples(
    queries: Sequence[EvalQuery], records: Mapping[str, Mapping[str, Mapping[str, Any]]], n: int
) -> list[EvalQuery]:
    """Queries where the methods' ranks disagree first, then the rest; dataset order."""

    def ranks(q: EvalQuery) -> set[Any]:
        return {recs[q.id].get("first_positive_rank") for recs in records.values() if q.id in recs}

    usable = [q for q in queries if all(q.id in recs for recs in records.values())]
    differ = [q for q in usable if len(ranks(q)) > 1]
    rest = [q for q in usable if len(ranks(q)) <= 1]
    return (differ + rest)[:n]


def _rect(
    ax: Any, box: Sequence[float], color: Any, style: str, width: float, stroke: bool = False
) -> None:
    from matplotlib import patheffects
    from matplotlib.patches import Rectangle

    x1, y1, x2, y2 = box
    rect = Rectangle(
        (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linestyle=style, lw=width
    )
    if stroke:
        rect.set_path_effects([patheffects.withStroke(linewidth=width + 1.5, foreground="black")])
    ax.add_patch(rect)


def plot_examples(
    queries: Sequence[EvalQuery],
    records: Mapping[str, Mapping[str, Mapping[str, Any]]],
    path: str | Path,
    *,
    n_examples: int = 12,
    columns: int = 4,
) -> Path | None:
    """A grid of example queries with each method's chosen box and the ground-truth box.

    Each panel shows the query image, the GT box (dashed white) and, per method that
    cropped, its box in the method's colour; the title is the wrapped question and the
    rank of the first positive per method (``-`` when the pool has none).

    Args:
        queries: Candidate queries (dataset order).
        records: Method -> query id -> record (as written by the runner: ``decision`` with
            ``box``, and ``first_positive_rank``).
        path: PNG to write.
        n_examples: Panels to draw (queries where the methods disagree come first).
        columns: Panels per row.

    Returns:
        The path written, or ``None`` when matplotlib is missing or nothing can be shown.
    """
    if not have_matplotlib("the example grid"):
        return None
    from matplotlib import patheffects
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from region_rerank.images import load_image

    chosen = _pick_examples(queries, records, n_examples)
    if not chosen:
        logger.warning("no recorded queries to draw in %s", path)
        return None
    names = list(records)
    colors = dict(zip(names, _colors(len(names))))
    cols = max(1, min(columns, len(chosen)))
    rows = -(-len(chosen) // cols)
    fig = Figure(figsize=(3.6 * cols, 4.4 * rows + 0.6), dpi=100)
    for k, query in enumerate(chosen):
        ax = fig.add_subplot(rows, cols, k + 1)
        image = load_image(query.image)
        w, h = image.size
        thumb = image.copy()
        thumb.thumbnail((_THUMB_SIDE, _THUMB_SIDE))
        ax.imshow(thumb, extent=(0, w, h, 0))
        if query.box is not None:
            _rect(ax, query.box.as_tuple(), _GT_COLOR, "--", 1.6, stroke=True)
        parts = []
        for name in names:
            rec = records[name][query.id]
            box = (rec.get("decision") or {}).get("box")
            if box:
                _rect(ax, box, colors[name], "-", 1.6)
            rank = rec.get("first_positive_rank")
            parts.append(f"{name}: {rank if rank is not None else '-'}")
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        question = textwrap.fill(query.question, 44, max_lines=3, placeholder=" ...")
        ranks = textwrap.fill("positive rank: " + " | ".join(parts), 52)
        ax.set_title(f"{question}\n{ranks}", fontsize=7)
    gt = Line2D([], [], color=_GT_COLOR, linestyle="--", label="ground truth")
    gt.set_path_effects([patheffects.withStroke(linewidth=3, foreground="black")])
    handles = [gt]
    handles += [Line2D([], [], color=colors[n], label=n) for n in names]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out = Path(path)
    fig.savefig(out)
    logger.info("wrote %s", out)
    return out


def write_report(
    out_dir: str | Path,
    name: str,
    results: Mapping[str, Mapping[str, Any]],
    queries: Sequence[EvalQuery],
    records: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    n_examples: int = 12,
) -> None:
    """Write ``metrics.json``, ``metrics.md`` and (with matplotlib) the two PNGs.

    Args:
        out_dir: The report folder (must exist).
        name: Dataset name, used in titles.
        results: Method -> metrics.
        queries: The evaluated queries (dataset order).
        records: Method -> query id -> per-query record (for the example grid).
        n_examples: Panels in ``examples.png`` (0: no grid).
    """
    out = Path(out_dir)
    (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    table = format_markdown_table(results, [*DEFAULT_COLUMNS, "sec_per_query"])
    header = f"# {name}: {len(queries)} queries\n\n"
    (out / "metrics.md").write_text(header + table, encoding="utf-8")
    plot_method_bars(results, out / "methods.png", title=f"{name} ({len(queries)} queries)")
    if n_examples > 0:
        plot_examples(queries, records, out / "examples.png", n_examples=n_examples)
    logger.info("wrote the report to %s", out)
