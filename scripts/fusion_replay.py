"""What another ``blend`` fusion setting would do, replayed from the records of two runs.

A ``bench quality`` run with ``--fusion crop`` records each candidate's similarity to the
chosen view; the same run with ``--fusion blend --full-weight 0.5`` records the mean of the
view and full-image similarities over the same pools (the first stage does not depend on
the fusion). Together they give both similarities exactly (full = 2 * mean - view), so any
``--full-weight`` / ``--close-margin`` / ``--close-full-weight`` setting can be replayed
with the library's own :func:`region_rerank.fusion.fuse_scores`, without re-running the
scorer. For every setting of the grid this prints R@1 and "kept first" (of the queries the
``full`` method ranks first, the share still first) pooled over the report folders (one
per world seed), and the lowest kept first of any single seed.

Choose on development seeds only; then check the chosen setting with a real run.

Usage:
    python scripts/fusion_replay.py WORK... --method NAME [--full-weight 0.3,0.4]
        [--close-margin 0,0.05] [--close-full-weight 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from region_rerank.fusion import fuse_scores

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crop_gate import load_records

CROP_REPORT = "report-retrieve-fused"
MEAN_REPORT = "report-retrieve-fused-fusion-blend-0.5"


@dataclass(frozen=True)
class Replayed:
    """One query's pool with both similarities, and what the ``full`` method did."""

    ids: list[str]
    view: list[float]
    full: list[float]
    positives: set[str]
    full_first: bool


def seed_folders(roots: Sequence[Path], method: str, mean_report: str = MEAN_REPORT) -> list[Path]:
    """Every folder under ``roots`` holding ``method``'s records of both runs."""
    found = sorted(
        {
            p.parent.parent.parent
            for root in roots
            for p in root.rglob(f"{CROP_REPORT}/records/{method}.jsonl")
            if (p.parent.parent.parent / mean_report / "records" / f"{method}.jsonl").is_file()
        }
    )
    if not found:
        raise SystemExit(
            f"no folder under {[str(r) for r in roots]} has records/{method}.jsonl in both "
            f"{CROP_REPORT} and {mean_report}"
        )
    return found


def load_queries(folder: Path, method: str, mean_report: str = MEAN_REPORT) -> list[Replayed]:
    """Both similarities of every candidate of every query of one seed folder."""
    view = load_records(folder / CROP_REPORT / "records" / f"{method}.jsonl")
    mean = load_records(folder / mean_report / "records" / f"{method}.jsonl")
    full = load_records(folder / CROP_REPORT / "records" / "full.jsonl")
    out = []
    for qid, rec in view.items():
        if qid not in mean or qid not in full:
            raise SystemExit(f"{folder}: query {qid} is missing from one of the runs")
        v = dict(zip(rec["ranked_ids"], rec["scores"]))
        m = dict(zip(mean[qid]["ranked_ids"], mean[qid]["scores"]))
        if set(v) != set(m):
            raise SystemExit(f"{folder}: query {qid} has different pools in the two runs")
        ids = list(rec["ranked_ids"])
        base = full[qid]
        out.append(
            Replayed(
                ids=ids,
                view=[float(v[i]) for i in ids],
                full=[2.0 * float(m[i]) - float(v[i]) for i in ids],
                positives=set(rec["positives"]),
                full_first=bool(base["ranked_ids"]) and base["ranked_ids"][0] in base["positives"],
            )
        )
    return out


def replay(queries: Sequence[Replayed], **blend: float) -> dict[str, Any]:
    """R@1 and kept first of one ``blend`` setting over ``queries``."""
    first = kept = full_first = 0
    for q in queries:
        scores = fuse_scores(q.view, mode="blend", full_scores=q.full, **blend)
        best = max(range(len(scores)), key=lambda i: (scores[i], -i)) if scores else None
        ok = best is not None and math.isfinite(scores[best]) and q.ids[best] in q.positives
        first += ok
        full_first += q.full_first
        kept += q.full_first and ok
    return {
        "r1": first / len(queries),
        "kept_first": kept / full_first if full_first else float("nan"),
        "full_first": full_first,
    }


def grid_rows(
    seeds: dict[str, list[Replayed]],
    full_weights: Sequence[float],
    close_margins: Sequence[float],
    close_full_weights: Sequence[float],
) -> list[dict[str, Any]]:
    """One row per setting: pooled figures and the lowest per-seed kept first."""
    pooled = [q for qs in seeds.values() for q in qs]
    rows = []
    for w, m, cw in itertools.product(full_weights, close_margins, close_full_weights):
        if m == 0 and cw != close_full_weights[0]:
            continue  # no query is close: every close weight gives the same scores
        blend = {"full_weight": w, "close_margin": m, "close_full_weight": cw}
        per_seed = {name: replay(qs, **blend) for name, qs in seeds.items()}
        rows.append(
            {
                **blend,
                **replay(pooled, **blend),
                "min_seed_kept_first": min(r["kept_first"] for r in per_seed.values()),
                "per_seed": per_seed,
            }
        )
    return rows


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("roots", nargs="+", type=Path, help="bench quality --work folders")
    ap.add_argument("--method", required=True, help="the policy's method name in the runs")
    ap.add_argument("--full-weight", default="0,0.2,0.3,0.4,0.5", help="comma-separated")
    ap.add_argument("--close-margin", default="0", help="comma-separated")
    ap.add_argument("--close-full-weight", default="1", help="comma-separated")
    ap.add_argument(
        "--mean-report",
        default=MEAN_REPORT,
        help=f"report folder of the blend 0.5 run (default {MEAN_REPORT})",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    folders = seed_folders(args.roots, args.method, args.mean_report)
    seeds = {str(f): load_queries(f, args.method, args.mean_report) for f in folders}
    rows = grid_rows(
        seeds,
        _floats(args.full_weight),
        _floats(args.close_margin),
        _floats(args.close_full_weight),
    )
    n = sum(len(qs) for qs in seeds.values())
    print(f"{args.method}: {len(folders)} seed folders, {n} queries")
    print(
        "| full weight | close margin | close weight | R@1 | kept first | lowest seed |\n"
        "|---:|---:|---:|---:|---:|---:|"
    )
    for r in rows:
        close = f"{r['close_full_weight']:g}" if r["close_margin"] else "-"
        print(
            f"| {r['full_weight']:g} | {r['close_margin']:g} | {close} "
            f"| {r['r1']:.3f} | {r['kept_first']:.3f} | {r['min_seed_kept_first']:.3f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"method": args.method, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
