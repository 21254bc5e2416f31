"""How much of the light policies' gain survives a scorer they were never trained with.

Trains (once, into ``--work``) a second demo image tower -- seed 7, channel widths
24,48,96,160,224 (one block deeper and of other widths than the shipped 32,64,128,192 tower,
trained from seed 0) -- then runs ``region-rerank bench quality`` on the same worlds with the
shipped demo scorer and with that unseen one. For every policy it prints the CondR@1 gain
over the full image with each scorer (mean ± sd over seeds) and the share of the gain kept
with the unseen scorer (the ratio of the means).

Usage:
    python scripts/unseen_scorer.py --seeds 100,101,102 --n-test 500 [--methods M] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path
from typing import Any

from region_rerank.bench.quality import run_quality
from region_rerank.demo.tower_training import TowerTrainingConfig, train_image_tower

#: The policies compared: the view policy reads the scorer's own embeddings, the dense ones
#: a fixed encoder (dense_objects also the demo detector's boxes).
METHODS = (
    "views=proposal",
    "dense=proposal:dense",
    "dense_objects=proposal:dense-objects",
    "oracle",
)
UNSEEN_TOWER = TowerTrainingConfig(seed=7, width=(24, 48, 96, 160, 224))


def _gains(report: dict[str, Any], name: str) -> list[float]:
    seeds = report["methods"]["full"]["per_seed"]
    mine = report["methods"][name]["per_seed"]
    return [mine[s]["cond_r1"] - seeds[s]["cond_r1"] for s in seeds]


def _pm(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):+.3f} ± {sd:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="100,101,102")
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--work", default="out/unseen_scorer")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="NAME=SPEC,... (default: %(default)s)"
    )
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = Path(args.work)
    tower = work / "unseen_tower.safetensors"
    if not tower.is_file():
        logging.info("training the unseen image tower (%s)", UNSEEN_TOWER)
        train_image_tower(UNSEEN_TOWER, tower)
    seeds = [int(s) for s in args.seeds.split(",")]
    reports = {
        scorer: run_quality(
            seeds, n_test=args.n_test, methods=methods, scorer=scorer, work_dir=work / "bench"
        )
        for scorer in ("demo", f"demo:{tower}")
    }
    seen, unseen = reports["demo"], reports[f"demo:{tower}"]
    out: dict[str, Any] = {"seeds": seeds, "n_test": args.n_test, "tower": str(tower)}
    full_seen = seen["methods"]["full"]["cond_r1"]
    full_unseen = unseen["methods"]["full"]["cond_r1"]
    print(f"seeds {seeds}, {args.n_test} test queries each; CondR@1 gain over the full image")
    print(
        f"full image: {full_seen:.3f} with the demo scorer, {full_unseen:.3f} with the unseen one"
    )
    print("| policy | gain, demo scorer | gain, unseen scorer | gain kept |")
    print("|---|---:|---:|---:|")
    for name in (m.split("=")[0] for m in methods):
        a, b = _gains(seen, name), _gains(unseen, name)
        kept = statistics.mean(b) / statistics.mean(a)
        out[name] = {"gain_seen": a, "gain_unseen": b, "kept": kept}
        print(f"| {name} | {_pm(a)} | {_pm(b)} | {kept:.0%} |")
    out["reports"] = reports
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
