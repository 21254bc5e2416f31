"""``region-rerank convert ...`` and ``region-rerank check-images``: the benchmark files as
released -> the generic layout, published pools -> ``pools.jsonl``, and a pre-flight count
of the query images that exist (docs/datasets.md has the recipe)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_convert_parsers"]


def _common(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--out", required=True, help="output folder (generic JSONL layout)")
    cmd.add_argument(
        "--kb-images",
        choices=("urls", "none"),
        default="urls",
        help="keep the KB image URLs (default) or none",
    )
    cmd.add_argument(
        "--kb-text",
        choices=("reference", "full"),
        default="reference",
        help="reference: title + first three sections, cut at 500 characters (default); "
        "full: title + every non-empty section, no cut",
    )
    cmd.add_argument("--lenient", action="store_true", help="skip and count malformed rows")


def add_convert_parsers(sub: Any) -> None:
    """Register ``convert`` (evqa, infoseek, pools) and ``check-images``."""
    conv = sub.add_parser("convert", help="convert E-VQA / InfoSeek files or published pools")
    conv.set_defaults(run=_run_convert)
    kinds = conv.add_subparsers(dest="convert_kind", required=True)
    evqa = kinds.add_parser("evqa", help="E-VQA CSV + KB JSON + images -> generic layout")
    evqa.add_argument("--csv", required=True, help="train.csv / val.csv / test.csv")
    evqa.add_argument("--kb", required=True, help="encyclopedic_kb_wiki.json (or .gz)")
    evqa.add_argument("--images", required=True, help="folder with landmarks/ and inaturalist/")
    evqa.add_argument("--id-map", help="iNaturalist id -> file name (e.g. val_id2name.json)")
    evqa.add_argument("--keep-2hop", action="store_true", help="keep 2_hop rows")
    _common(evqa)
    info = kinds.add_parser("infoseek", help="InfoSeek JSONL + withkb + KB -> generic layout")
    info.add_argument("--questions", required=True, help="infoseek_{train,val}.jsonl")
    info.add_argument("--withkb", required=True, help="infoseek_{train,val}_withkb.jsonl")
    info.add_argument("--kb", required=True, help="Wiki6M JSONL(.gz) or a KB in E-VQA schema")
    info.add_argument("--images", required=True, help="OVEN image folder")
    info.add_argument("--qtype", help="infoseek_val_qtype.jsonl")
    info.add_argument("--entity-map", help="JSON object entity_id -> KB key")
    info.add_argument("--image-id-map", help="InfoSeek id2image.jsonl")
    _common(info)
    pools = kinds.add_parser("pools", help="EchoSight / OMGM result file -> pools.jsonl")
    pools.add_argument("--from", dest="source", required=True, help="the published JSON")
    pools.add_argument("--data", required=True, help="converted layout (queries + kb)")
    pools.add_argument("--which", choices=("retrieved", "reranked"), default="retrieved")
    pools.add_argument("--out", help="pools file (default: DATA/pools.jsonl)")
    pools.add_argument("--lenient", action="store_true", help="skip malformed records")
    check = sub.add_parser(
        "check-images", help="count the query images of a layout that exist (before a run)"
    )
    check.add_argument("--data", required=True, help="layout folder (queries.jsonl)")
    check.add_argument("--split", help="DATA/SPLIT/queries.jsonl")
    check.add_argument("--strict", action="store_true", help="exit 1 when any image is missing")
    check.set_defaults(run=_run_check)


def _text(args: argparse.Namespace) -> Any:
    from region_rerank.eval.kb_text import REFERENCE_TEXT, KBTextConfig

    if args.kb_text == "full":
        return KBTextConfig(max_sections=None, max_chars=None, skip_empty=True)
    return REFERENCE_TEXT


def _run_convert(args: argparse.Namespace) -> int:
    from region_rerank.eval import convert

    if args.convert_kind == "pools":
        return _run_pools(args)
    if args.convert_kind == "evqa":
        summary = convert.convert_evqa(
            args.csv,
            args.kb,
            args.images,
            args.out,
            id_map=args.id_map,
            drop_question_types=() if args.keep_2hop else ("2_hop",),
            text=_text(args),
            kb_images=args.kb_images,
            lenient=args.lenient,
            progress=True,
        )
    else:
        summary = convert.convert_infoseek(
            args.questions,
            args.withkb,
            args.kb,
            args.images,
            args.out,
            qtype=args.qtype,
            entity_map=args.entity_map,
            image_id_map=args.image_id_map,
            text=_text(args),
            kb_images=args.kb_images,
            lenient=args.lenient,
            progress=True,
        )
    print("\n".join(summary.lines()))
    return 0


def _run_pools(args: argparse.Namespace) -> int:
    from region_rerank.eval._rows import iter_jsonl
    from region_rerank.eval.pool_import import import_pools
    from region_rerank.eval.pools import write_pools_jsonl

    def ids(path: Path) -> set[str]:
        return {str(v["id"]) for _, v in iter_jsonl(path) if isinstance(v, dict) and "id" in v}

    data = Path(args.data)
    pools, summary = import_pools(
        args.source,
        query_ids=ids(data / "queries.jsonl"),
        kb_ids=ids(data / "kb.jsonl"),
        which=args.which,
        lenient=args.lenient,
    )
    out = Path(args.out) if args.out else data / "pools.jsonl"
    write_pools_jsonl(pools, out)
    print(
        f"wrote {summary.pools} pools to {out}; records for unknown queries "
        f"{summary.unknown_queries}; malformed skipped {summary.skipped}; queries without a "
        f"pool {summary.missing_count}"
        + (f" (e.g. {', '.join(summary.missing_queries)})" if summary.missing_queries else "")
    )
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from region_rerank.eval.convert import check_images

    folder = Path(args.data) / args.split if args.split else Path(args.data)
    report = check_images(folder / "queries.jsonl")
    local = report.found + report.missing
    share = report.found / local if local else 1.0
    print(
        f"{report.found} / {local} query images found ({share:.1%}); "
        f"{report.remote} remote (not checked); {report.queries} queries"
    )
    for example in report.missing_examples:
        print(f"  missing {example}")
    if report.queries and report.found == 0 and report.remote == 0:
        return 1
    return 1 if args.strict and report.missing else 0
