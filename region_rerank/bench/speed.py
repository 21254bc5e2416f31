"""``region-rerank bench speed``: the speed figures of the re-ranker on this machine.

Models: the embedded demo scorer (the real all-MiniLM-L6-v2 text tower + the small CNN
image tower) and the light learned cropper (:class:`ProposalPolicyCropper`, shipped
weights); the CLIP ViT-L/14 image processor geometry (224 px, bicubic, centre crop) for
the tensor-crop figure. Every figure is a median over ``repeats`` runs; every comparison
is the median of per-pair ratios of interleaved runs in this process. Queries and
candidate images are PNG bytes, so decoding is part of every re-rank.

Figures (JSON keys): ``cache_speedup``, ``batch_speedup``, ``tensor_crop_speedup``,
``k_scaling_100_over_20``, ``non_model_overhead``, ``cropper_cost_ratio``,
``light_cropper_over_floor``, ``dense_cropper_cost_ratio``, ``worst_aspect_over_square``,
``cache_peak_mb`` (see :data:`FIGURES`), and ``light_cropper_gflops`` (FLOPs of one
decision of each light cropper).
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from region_rerank._validate import check_int
from region_rerank.bench.figures import FIGURE_FUNCTIONS, Bench, builtin_cropper_names
from region_rerank.bench.report_file import write_report
from region_rerank.errors import ConfigError

__all__ = ["FIGURES", "TARGETS", "SpeedSettings", "run_speed_bench", "format_table", "machine"]

logger = logging.getLogger(__name__)

#: JSON key -> what it measures.
FIGURES: dict[str, str] = {
    "cache_speedup": "cold / warm re-rank of the same candidates (full image)",
    "batch_speedup": "queries one by one / one rerank_batch (light cropper, K=20, warm cache)",
    "batch_speedup_full": "the same without cropping (full image, K=20, warm cache)",
    "tensor_crop_speedup": "PIL round trip (PIL crop, resize, normalise) / tensor path, 224 px",
    "k_scaling_100_over_20": "re-rank time K=100 / K=20, cached candidates (full image)",
    "non_model_overhead": "share of re-rank wall time outside model forwards (light, K=20)",
    "non_model_overhead_full": "the same without cropping (full image, K=20)",
    "light_cropper_over_floor": "light cropper time / its proposal + question forwards",
    "dense_cropper_cost_ratio": "the scorer-independent light cropper's (proposal_dense) time "
    "per query / a plain warm K=20 re-rank",
    "worst_aspect_over_square": "re-rank time, most elongated query / square of equal pixels "
    "(worst cropper and shape: 2:1, 1:10000)",
    "cache_peak_mb": "peak RSS growth of a cache filled with cache_entries embeddings (MB)",
    "retrieve_view_over_full": "region-aware retrieve + re-rank (view) / the same with the "
    "full image (light cropper, k=20)",
    "hnsw_search_10x_kb": "FAISS HNSW search time over a 10x larger KB (< 10: sub-linear; "
    "exact search grows 10x)",
}
#: JSON key -> (comparison, target) on CPU, from the issue.
TARGETS: dict[str, tuple[str, float]] = {
    "cache_speedup": (">=", 5.0),
    "batch_speedup": (">=", 2.5),
    "tensor_crop_speedup": (">=", 2.0),
    "k_scaling_100_over_20": ("<=", 1.5),
    "non_model_overhead": ("<=", 0.15),
    "light_cropper_over_floor": ("<=", 1.3),
    "dense_cropper_cost_ratio": ("<=", 3.0),
    "worst_aspect_over_square": ("<=", 2.0),
    "retrieve_view_over_full": ("<=", 1.3),
    "hnsw_search_10x_kb": ("<", 10.0),
}


@dataclass(frozen=True)
class SpeedSettings:
    """Sizes of the benchmark.

    Attributes:
        repeats: Timed runs per figure (the median is reported).
        batch_queries: Queries of the batching figure.
        cache_candidates: Candidates of the cache figure.
        cache_entries: Embeddings stored by the cache-memory figure.
        crop_boxes: Proposal crops of the tensor-crop figure.
        pool_sizes: ``(small, large)`` K of the scaling figure.
        croppers: More croppers timed by the cropper figure, as ``(name, spec)`` pairs
            (e.g. ``("mine", "proposal:out/p/proposal_policy.safetensors")``: a policy you
            trained, against a plain re-rank); built with the demo scorer.
    """

    repeats: int = 9
    batch_queries: int = 16
    cache_candidates: int = 50
    cache_entries: int = 10_000
    crop_boxes: int = 16
    pool_sizes: tuple[int, int] = (20, 100)
    croppers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in ("repeats", "batch_queries", "cache_candidates", "cache_entries", "crop_boxes"):
            check_int(name, getattr(self, name), 1)
        if not 1 <= self.pool_sizes[0] < self.pool_sizes[1]:
            raise ConfigError(f"pool_sizes={self.pool_sizes!r} must be (small, large), 1 <= small")
        names = [name for name, _ in self.croppers]
        if len(set(names)) != len(names):
            raise ConfigError(f"croppers: a name is given twice in {names}")
        taken = builtin_cropper_names()
        for name in names:
            if name in taken:
                raise ConfigError(
                    f"cropper name {name!r} is taken by a built-in one: {sorted(taken)}"
                )

    @classmethod
    def quick(cls) -> SpeedSettings:
        """A fast configuration for CI (same code paths, fewer and smaller runs)."""
        return cls(repeats=1, batch_queries=2, cache_candidates=10, cache_entries=500)


def machine() -> dict[str, Any]:
    """CPU model, core count, load average and library versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def run_speed_bench(
    settings: SpeedSettings | None = None, json_path: str | Path | None = None
) -> dict[str, Any]:
    """Measure every figure and return them (and write them as JSON to ``json_path``).

    Returns:
        The figures (keys of :data:`FIGURES` plus the raw times behind each ratio), the
        model sizes, the settings, the machine and the targets.
    """
    import torch

    s = settings or SpeedSettings()
    started = time.perf_counter()
    torch.manual_seed(0)
    bench = Bench(s)
    results: dict[str, Any] = {}
    for name, figure in FIGURE_FUNCTIONS:
        t = time.perf_counter()
        results.update(figure(bench))
        logger.info("%s figure measured in %.1f s", name, time.perf_counter() - t)
    report = {
        "figures": results,
        "models": bench.models(),
        "settings": s.__dict__,
        "machine": machine(),
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
        "seconds": time.perf_counter() - started,
    }
    if json_path is not None:
        write_report(json_path, report)
    return report


def _verdict(key: str, value: float) -> str:
    if key not in TARGETS:
        return ""
    op, target = TARGETS[key]
    ok = {">=": value >= target, "<=": value <= target, "<": value < target}[op]
    return f"{op} {target:g}: {'met' if ok else 'NOT met'}"


def format_table(report: dict[str, Any]) -> str:
    """The figures of ``report`` as a Markdown table (figure, value, target, meaning)."""
    f = report["figures"]
    rows = ["| figure | value | target | what |", "|---|---|---|---|"]
    for key, what in FIGURES.items():
        if key not in f:  # hnsw_search_10x_kb without FAISS
            rows.append(f"| `{key}` | not measured | | {what} (FAISS is not installed) |")
            continue
        rows.append(f"| `{key}` | {f[key]:.3g} | {_verdict(key, f[key])} | {what} |")
    for name, value in f["cropper_cost_ratio"].items():
        growth = next(v for k, v in f.items() if k.startswith("cropper_cost_k"))[name]
        rows.append(
            f"| `cropper_cost_ratio.{name}` | {value:.3g} | K=100/K=20: {growth:.2f} | "
            f"{f['cropper_s'][name] * 1000:.1f} ms per query vs plain re-rank "
            f"{f['plain_rerank_s'] * 1000:.1f} ms |"
        )
    m = report["machine"]
    rows.append("")
    rows.append(
        f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"load {m['load_average_1m']:.2f}; medians of {report['settings']['repeats']} runs; "
        f"settings {report['settings']}."
    )
    return "\n".join(rows) + "\n"
