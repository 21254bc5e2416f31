"""Arguments and entry points of ``region-rerank bench quality`` and ``bench compare``
(argparse only at import)."""

from __future__ import annotations

import argparse
from typing import Any

from region_rerank.fusion import add_fusion_argument, fusion_settings
from region_rerank.model_options import add_model_option_args, model_options_from_args
from region_rerank.world_cli import add_world_arguments, world_overrides

__all__ = ["add_compare_parser", "add_quality_parser"]


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seeds like '100,101,102', got {text!r}"
        ) from None


def add_quality_parser(bench_sub: Any) -> None:
    """Add ``quality`` to the ``bench`` sub-commands."""
    from region_rerank.specs import usage_line

    quality = bench_sub.add_parser(
        "quality",
        help="compare croppers over several generated worlds (mean ± sd over seeds)",
    )
    quality.add_argument(
        "--seeds", type=_seeds, required=True, help="world seeds, e.g. 100,101,102"
    )
    quality.add_argument("--n-test", type=int, default=500, help="test queries per world")
    quality.add_argument(
        "--methods",
        default="center,random,text_match,proposal,oracle",
        help=f"comma-separated [NAME=]SPEC: {usage_line('cropper')} | oracle; full is always in",
    )
    quality.add_argument("--scorer", default="demo", help=usage_line("scorer"))
    quality.add_argument("--json", help="write the report to this path")
    quality.add_argument(
        "--work", default="out/bench_quality", help="worlds, pools and records (resumable)"
    )
    add_model_option_args(quality, device="cpu")
    quality.add_argument("--batch-size", type=int, default=32, help="queries per batch")
    quality.add_argument(
        "--retrieve",
        choices=("full", "view", "fused"),
        default=None,
        help="each method retrieves its own pool with this query view (default: shared "
        "full-image pools)",
    )
    add_fusion_argument(quality)
    add_world_arguments(quality)
    quality.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from region_rerank.bench.quality import format_quality_table, run_quality
    from region_rerank.reranker import RerankerConfig

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    report = run_quality(
        args.seeds,
        n_test=args.n_test,
        world=world_overrides(args),
        methods=methods,
        scorer=args.scorer,
        work_dir=args.work,
        batch_size=args.batch_size,
        model_options=model_options_from_args(args),
        retrieve=args.retrieve,
        rerank_config=RerankerConfig(**fusion_settings(args)),
    )
    print(format_quality_table(report), end="")
    if args.json:
        _write_json(args.json, report)
    return 0


def add_compare_parser(bench_sub: Any) -> None:
    """Add ``compare`` to the ``bench`` sub-commands."""
    from region_rerank.bench.compare import FIGURES

    compare = bench_sub.add_parser(
        "compare",
        help="two quality reports of the same scenes (e.g. two phrasing families), paired per seed",
    )
    compare.add_argument("first", help="the reference report (bench quality --json)")
    compare.add_argument("second", help="the report compared with it, on the same scenes")
    compare.add_argument("--figure", choices=FIGURES, default="cond_r1", help="the figure compared")
    compare.add_argument("--json", help="write the comparison to this path")
    compare.set_defaults(run=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from region_rerank.bench.compare import compare_reports, format_comparison, load_report

    result = compare_reports(load_report(args.first), load_report(args.second), args.figure)
    print(format_comparison(result, (args.first, args.second)), end="")
    if args.json:
        _write_json(args.json, result)
    return 0


def _write_json(path: str, data: Any) -> None:
    from region_rerank.bench.report_file import write_report

    print(f"wrote {write_report(path, data)}")
