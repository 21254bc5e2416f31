"""Train the demo world's image tower and write region_rerank/demo/weights/.

Usage: python scripts/train_demo_tower.py [--steps N] [--seed S] [--width C1,C2,...] [--out PATH]
Reproducible from the seed; about 6-8 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import logging

from region_rerank.demo.tower import WEIGHTS_PATH
from region_rerank.demo.tower_training import TowerTrainingConfig, train_image_tower


def main() -> None:
    defaults = TowerTrainingConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--out", default=str(WEIGHTS_PATH))
    parser.add_argument(
        "--width",
        default=",".join(map(str, defaults.width)),
        help="channels of the stem and each block, comma-separated (more entries: deeper)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    width = tuple(int(w) for w in args.width.split(","))
    cfg = TowerTrainingConfig(
        seed=args.seed, steps=args.steps, batch_size=args.batch_size, width=width
    )
    summary = train_image_tower(cfg, args.out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
