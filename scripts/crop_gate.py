"""What a crop gate would do to a light policy, from the records of a finished run.

The proposal policy's crop gate (``ProposalPolicyConfig.min_crop_confidence``) turns a REGION
decision whose probability is below ``tau`` into FULL. A query so gated gets exactly what
the ``full`` method got in the same run (the same first-stage search and re-ranking with the
whole image), so its effect can be read off the records of a ``bench quality`` (or ``eval``)
run without re-running anything: for every ``tau`` of the grid this prints, pooled over the
run's report folders (one per world seed), the crop rate, R@1, first-stage coverage and
"kept first" (of the queries the full image already ranks first, the share still first).

Choose ``tau`` on development seeds only, then check it with a real run (``--threshold`` of
``region-rerank crop``, or the ``min_crop_confidence`` recorded in the weights' card).

Usage:
    python scripts/crop_gate.py WORK_OR_REPORT_DIR... --method NAME [--grid 0,0.5,0.9]
        [--report NAME] [--target 0.975] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from region_rerank.eval.metrics import first_positive_rank


def load_records(path: Path) -> dict[str, dict[str, Any]]:
    """A run's per-query records of one method, by query id."""
    with path.open() as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {r["query_id"]: r for r in rows}


def report_dirs(roots: Sequence[Path], method: str, report: str | None = None) -> list[Path]:
    """Every report folder under ``roots`` (or a root itself) holding records of ``method``;
    only those named ``report`` when given (a work folder may hold several runs, e.g.
    ``report-retrieve-fused`` and ``report-retrieve-fused-fusion-max``)."""
    out: list[Path] = []
    for root in roots:
        hits = [root] if (root / "records" / f"{method}.jsonl").is_file() else []
        hits += sorted(p.parent.parent for p in root.rglob(f"records/{method}.jsonl"))
        out += [h for h in dict.fromkeys(hits) if h not in out]
    if report is not None:
        out = [d for d in out if d.name == report]
    if not out:
        raise SystemExit(
            f"no {report or ''} records/{method}.jsonl under {[str(r) for r in roots]}"
        )
    names = sorted({d.name for d in out})
    if len(names) > 1:
        raise SystemExit(
            f"several runs {names} under {[str(r) for r in roots]}: pick one with --report"
        )
    return out


def gate_figures(dirs: Sequence[Path], method: str, tau: float) -> dict[str, float]:
    """Crop rate, R@1, coverage and kept first of ``method`` gated at ``tau``, pooled."""
    n = crops = first = covered = full_first = kept = 0
    for d in dirs:
        mine, full = (
            load_records(d / "records" / f"{method}.jsonl"),
            load_records(d / "records" / "full.jsonl"),
        )
        for qid, rec in mine.items():
            base = full[qid]
            p = rec["decision"].get("confidence")
            region = rec["decision"]["action"] == "REGION"
            if region and p is None:
                raise SystemExit(f"{d}: {method} records carry no decision confidence")
            use = base if region and p < tau else rec
            rank = first_positive_rank(use["ranked_ids"], set(use["positives"]))
            base_rank = first_positive_rank(base["ranked_ids"], set(base["positives"]))
            n += 1
            crops += use is rec and region
            covered += rank is not None
            first += rank == 1
            full_first += base_rank == 1
            kept += base_rank == 1 and rank == 1
    return {
        "tau": tau,
        "queries": n,
        "crop_rate": crops / n,
        "r1": first / n,
        "coverage": covered / n,
        "kept_first": kept / full_first if full_first else float("nan"),
        "full_first": full_first,
    }


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "roots", nargs="+", type=Path, help="bench quality --work folders or report folders"
    )
    ap.add_argument("--method", required=True, help="the light policy's method name in the run")
    ap.add_argument(
        "--report", default=None, help="report folder name when a work folder has several"
    )
    ap.add_argument("--grid", default="0,0.5,0.6,0.7,0.8,0.9", help="comma-separated gates")
    ap.add_argument(
        "--target",
        type=float,
        default=None,
        help="print the smallest gate whose kept first reaches this",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    dirs = report_dirs(args.roots, args.method, args.report)
    rows = [gate_figures(dirs, args.method, float(t)) for t in args.grid.split(",")]
    print(
        f"{args.method}: {len(dirs)} report folders, {rows[0]['queries']} queries, "
        f"{rows[0]['full_first']} first with the full image"
    )
    print("| gate | crop rate | R@1 | coverage | kept first |\n|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['tau']:g} | {r['crop_rate']:.3f} | {r['r1']:.3f} | {r['coverage']:.3f} "
            f"| {r['kept_first']:.3f} |"
        )
    if args.target is not None:
        ok = [r["tau"] for r in rows if r["kept_first"] >= args.target]
        print(f"smallest gate with kept first >= {args.target}: {ok[0] if ok else 'none'}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"method": args.method, "dirs": [str(d) for d in dirs], "rows": rows}, indent=2
            )
        )


if __name__ == "__main__":
    main()
