"""Command line of region-rerank.

- ``region-rerank crop IMAGE --question ... --cropper ... --out out.png``: print the crop
  decision (as text, or JSON with ``--json``) and write the image with the box drawn.
- ``region-rerank pools --data DIR [--split S] --scorer SPEC --k 20 [--out FILE]``: build
  top-K retrieval pools (default output: ``pools.jsonl`` beside ``queries.jsonl``).
- ``region-rerank eval --data DIR [--split S] --cropper [NAME=]SPEC ... --scorer SPEC
  --out DIR``: compare croppers (plus the full-image baseline; ``oracle`` crops the
  ground-truth box), resumably, write the report folder and print the Markdown table.
- ``region-rerank bench speed [--repeats N] [--json PATH] [--quick] [--cropper [NAME=]SPEC]``:
  measure the speed figures (:mod:`region_rerank.bench.speed`) and print them as a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from region_rerank.bench.quality_cli import add_compare_parser, add_quality_parser
from region_rerank.convert_cli import add_convert_parsers
from region_rerank.errors import RegionRerankError
from region_rerank.fusion import add_fusion_argument, fusion_settings
from region_rerank.index_cli import add_index_parsers
from region_rerank.model_options import add_model_option_args, model_options_from_args
from region_rerank.specs import usage_line
from region_rerank.world_cli import add_world_arguments, world_overrides

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``region-rerank`` command."""
    parser = argparse.ArgumentParser(
        prog="region-rerank",
        description="Query-side region cropping for multimodal RAG re-ranking.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)
    crop = sub.add_parser("crop", help="decide FULL or REGION for one image + question")
    crop.add_argument("image", help="image path")
    crop.add_argument("--question", "-q", required=True, help="the question about the image")
    crop.add_argument(
        "--cropper",
        default="grounding",
        help=f"{usage_line('cropper')} (MODEL: hub id or local folder)",
    )
    crop.add_argument(
        "--scorer",
        default="clip",
        help=f"scorer for croppers that need one: {usage_line('scorer', exclude=('cross',))}",
    )
    crop.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=(
            "grounding: detector score threshold; text_match: similarity margin; "
            "proposal: crop gate (minimum probability of the chosen region)"
        ),
    )
    crop.add_argument("--out", help="write the image with the box drawn to this path")
    add_model_option_args(crop)
    crop.add_argument("--json", action="store_true", help="print the decision as JSON")
    _add_pools_parser(sub)
    _add_eval_parser(sub)
    _add_demo_parser(sub)
    _add_bench_parser(sub)
    _add_train_parser(sub)
    add_convert_parsers(sub)
    add_index_parsers(sub)
    return parser


def _add_train_parser(sub: Any) -> None:
    from region_rerank.train.proposal_cli import add_proposal_arguments
    from region_rerank.train.vlm_cli import add_vlm_arguments

    train = sub.add_parser("train", help="train crop policies")
    train_sub = train.add_subparsers(dest="train_command", required=True)
    proposal = train_sub.add_parser(
        "proposal", help="r-GRPO training of the light proposal policy on the demo world"
    )
    add_proposal_arguments(proposal)
    vlm = train_sub.add_parser(
        "vlm", help="r-GRPO (TRL GRPOTrainer + LoRA) of a Qwen-VL crop policy from a YAML config"
    )
    add_vlm_arguments(vlm)


def _add_bench_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="synthetic benchmark tools")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    make = bench_sub.add_parser(
        "make", help="generate the synthetic clutter world (KB + train/val/test splits)"
    )
    make.add_argument("--out", required=True, help="output folder")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--n-train", type=int, default=1000)
    make.add_argument("--n-val", type=int, default=200)
    make.add_argument("--n-test", type=int, default=500)
    add_world_arguments(make)
    add_quality_parser(bench_sub)
    add_compare_parser(bench_sub)
    speed = bench_sub.add_parser("speed", help="measure the speed figures and print the table")
    speed.add_argument("--json", help="also write the figures as JSON to this path")
    speed.add_argument("--repeats", type=int, default=9, help="timed runs per figure (median)")
    speed.add_argument(
        "--quick", action="store_true", help="1 run of small sizes (CI smoke run; no figures)"
    )
    speed.add_argument(
        "--cropper",
        action="append",
        metavar="[NAME=]SPEC",
        help="also time this cropper in the cropper cost figure (repeatable), e.g. "
        "mine=proposal:out/p/proposal_policy.safetensors",
    )


def _add_demo_parser(sub: Any) -> None:
    demo = sub.add_parser(
        "demo", help="the offline end-to-end comparison on the synthetic clutter world"
    )
    demo.add_argument("--out", default="out/demo", help="output folder (world + report)")
    demo.add_argument("--n-test", type=int, default=500, help="test queries to generate")
    demo.add_argument("--seed", type=int, default=0, help="world seed")
    demo.add_argument("--no-resume", action="store_true", help="recompute every method")


def _add_data_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--data",
        required=True,
        help="dataset folder in the generic JSONL layout (queries.jsonl, kb.jsonl, pools.jsonl)",
    )
    cmd.add_argument(
        "--split",
        default=None,
        help="load DATA/SPLIT/queries.jsonl (with DATA/kb.jsonl when the split has no KB)",
    )
    add_model_option_args(cmd)
    cmd.add_argument(
        "--scorer",
        default="clip",
        help=f"{usage_line('scorer')} (cross: eval only; default: clip)",
    )


def _add_pools_parser(sub: Any) -> None:
    pools = sub.add_parser("pools", help="build top-K retrieval pools for a dataset")
    _add_data_args(pools)
    pools.add_argument("--k", type=int, default=20, help="pool size (default 20)")
    pools.add_argument(
        "--out", default=None, help="pools file (default: pools.jsonl beside queries.jsonl)"
    )
    pools.add_argument("--batch-size", type=int, default=64, help="images per embedding call")
    pools.add_argument(
        "--chunk-size", type=int, default=4096, help="KB entries per scoring block (memory bound)"
    )
    pools.add_argument(
        "--faiss",
        choices=("auto", "yes", "no"),
        default="auto",
        help="use a FAISS index (auto: when installed)",
    )


def _add_eval_parser(sub: Any) -> None:
    ev = sub.add_parser("eval", help="compare croppers on a dataset and write a report")
    _add_data_args(ev)
    ev.add_argument(
        "--cropper",
        action="append",
        default=None,
        metavar="[NAME=]SPEC",
        help=f"a method to compare (repeatable): {usage_line('cropper')} | oracle "
        "(ground-truth box); NAME defaults to SPEC. The full-image baseline is always "
        "included. Default: oracle",
    )
    ev.add_argument("--out", required=True, help="report folder (records, metrics, plots)")
    ev.add_argument("--limit", type=int, default=None, help="evaluate the first N queries only")
    ev.add_argument(
        "--no-resume", action="store_true", help="discard earlier records in --out and start over"
    )
    ev.add_argument("--batch-size", type=int, default=16, help="queries per re-ranking batch")
    ev.add_argument("--examples", type=int, default=12, help="queries in examples.png")
    ev.add_argument(
        "--build-pools",
        action="store_true",
        help="build top-K pools with --scorer when the dataset has none",
    )
    ev.add_argument(
        "--retrieve",
        choices=("full", "view", "fused"),
        default=None,
        help="give each method its own first stage over an index of the KB, searched with "
        "the full image, the method's own view, or both fused (instead of the dataset's "
        "pools); coverage is then per method and R@K end to end",
    )
    ev.add_argument("--k", type=int, default=20, help="pool size when pools are built (20)")
    add_fusion_argument(ev)


def _draw(image_path: str, decision: object, out: str) -> None:
    from PIL import ImageDraw

    from region_rerank.images import load_image

    image = load_image(image_path).copy()
    box = getattr(decision, "box", None)
    if box is not None:
        draw = ImageDraw.Draw(image)
        width = max(2, round(min(image.size) / 150))
        draw.rectangle(box.as_tuple(), outline=(255, 40, 40), width=width)
    image.save(out)


def _crop(args: argparse.Namespace) -> int:
    from region_rerank.factory import build_cropper, build_scorer, needs_scorer
    from region_rerank.images import load_image
    from region_rerank.types import Query

    options = model_options_from_args(args)
    scorer = (
        build_scorer(args.scorer, model_options=options) if needs_scorer(args.cropper) else None
    )
    cropper = build_cropper(
        args.cropper, model_options=options, scorer=scorer, threshold=args.threshold
    )
    image = load_image(args.image)
    decision = cropper.decide(Query(image=image, question=args.question, id=args.image))
    if args.json:
        print(json.dumps({**decision.to_dict(), "raw_output": decision.raw_output}))
    else:
        print(f"decision: {decision.action.value}")
        if decision.box is not None:
            x1, y1, x2, y2 = (round(v, 1) for v in decision.box.as_tuple())
            print(f"box: ({x1}, {y1}, {x2}, {y2})  area: {decision.area_fraction:.1%} of the image")
        if decision.reason:
            print(f"reason: {decision.reason}")
        if decision.raw_output:
            print(f"raw output: {decision.raw_output[:500]}")
    if args.out:
        _draw(args.image, decision, args.out)
        print(f"wrote {args.out}")
    return 0


def _method_specs(items: Sequence[str] | None) -> dict[str, str]:
    """Parse repeated ``[NAME=]SPEC`` values into ``name -> spec`` (names must be unique)."""
    from region_rerank.errors import ConfigError

    specs: dict[str, str] = {}
    for item in items or ["oracle"]:
        name, sep, spec = item.partition("=")
        if not sep:
            name, spec = item, item
        name, spec = name.strip(), spec.strip()
        if not name or not spec:
            raise ConfigError(f"--cropper {item!r}: expected NAME=SPEC or SPEC")
        if name in specs:
            raise ConfigError(f"--cropper: the method name {name!r} is given twice")
        specs[name] = spec
    return specs


def _pools(args: argparse.Namespace) -> int:
    from region_rerank.eval.pools import build_pools, write_pools_jsonl
    from region_rerank.eval.runner import load_eval_data
    from region_rerank.factory import build_scorer

    dataset = load_eval_data(args.data, args.split)
    scorer = build_scorer(args.scorer, model_options=model_options_from_args(args))
    use_faiss: bool | str = {"yes": True, "no": False}.get(args.faiss, "auto")
    pools = build_pools(
        dataset,
        scorer,
        k=args.k,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        use_faiss=use_faiss,
    )
    folder = Path(args.data) / args.split if args.split else Path(args.data)
    out = Path(args.out) if args.out else folder / "pools.jsonl"
    write_pools_jsonl(pools, out)
    covered = sum(1 for q in dataset.queries if q.positives & {c for c, _ in pools[q.id]})
    share = covered / max(1, len(dataset))
    print(f"wrote {len(pools)} pools (k={args.k}) to {out}; coverage {share:.1%}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from region_rerank.eval.metrics import format_markdown_table
    from region_rerank.eval.runner import ORACLE, load_eval_data, run_eval
    from region_rerank.factory import build_cropper, build_scorer, needs_scorer
    from region_rerank.reranker import RerankerConfig

    specs = _method_specs(args.cropper)
    dataset = load_eval_data(args.data, args.split)
    options = model_options_from_args(args)
    scorer = build_scorer(args.scorer, model_options=options)
    methods: dict[str, Any] = {}
    for name, spec in specs.items():
        if spec == ORACLE:
            methods[name] = ORACLE
        else:
            uses = needs_scorer(spec)
            methods[name] = build_cropper(
                spec, model_options=options, scorer=scorer if uses else None
            )
    results = run_eval(
        dataset,
        methods,
        scorer,
        args.out,
        batch_size=args.batch_size,
        resume=not args.no_resume,
        n_examples=args.examples,
        limit=args.limit,
        build_pools_if_missing=args.build_pools,
        pool_k=args.k,
        retrieve=args.retrieve,
        reranker_config=RerankerConfig(**fusion_settings(args)),
    )
    print(format_markdown_table(results), end="")
    print(f"wrote {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.train_command == "vlm":
        from region_rerank.train.vlm_cli import run_vlm_training

        summary = run_vlm_training(args)
    else:
        from region_rerank.train.proposal_cli import run_proposal_training

        summary = run_proposal_training(args)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from region_rerank.demo.run import run_demo
    from region_rerank.eval.metrics import format_markdown_table

    results = run_demo(args.out, n_test=args.n_test, seed=args.seed, resume=not args.no_resume)
    print(format_markdown_table(results), end="")
    print(f"wrote {args.out}/report (metrics.json, metrics.md, methods.png, examples.png)")
    return 0


def _bench_make(args: argparse.Namespace) -> int:
    from region_rerank.demo.world import make_world

    paths = make_world(
        args.out,
        seed=args.seed,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        **world_overrides(args),
    )
    print(f"wrote {paths.root}")
    return 0


def _bench_speed(args: argparse.Namespace) -> int:
    from region_rerank.bench.speed import SpeedSettings, format_table, run_speed_bench

    extra = tuple(_method_specs(args.cropper).items()) if args.cropper else ()
    base = SpeedSettings.quick() if args.quick else SpeedSettings(repeats=args.repeats)
    settings = dataclasses.replace(base, croppers=extra)
    print(format_table(run_speed_bench(settings, args.json)), end="")
    if args.json:
        print(f"wrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``region-rerank`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if getattr(args, "run", None) is not None:
            return int(args.run(args))
        if args.command == "crop":
            return _crop(args)
        if args.command == "pools":
            return _pools(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "bench":
            return _bench_speed(args) if args.bench_command == "speed" else _bench_make(args)
        if args.command == "train":
            return _train(args)
    except (RegionRerankError, ImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
